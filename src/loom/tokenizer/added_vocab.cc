#include "loom/tokenizer/added_vocab.h"

#include <algorithm>
#include <cctype>

#include "loom/tensor/error.h"

namespace loom::tokenizer {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
// Word characters for single_word tokens: ASCII alphanumerics, '_' and any non-ASCII byte.
bool is_word_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

}  // namespace

AddedVocab::AddedVocab(const nlohmann::json& added_tokens) {
  if (added_tokens.is_null()) return;
  if (!added_tokens.is_array()) throw Error("tokenizer.json: added_tokens must be an array");
  for (const auto& t : added_tokens) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
        !t["content"].is_string() || t["content"].get<std::string>().empty())
      throw Error(str("tokenizer.json: malformed added token ", t.dump()));
    AddedToken a;
    a.id = t["id"].get<int32_t>();
    a.content = t["content"].get<std::string>();
    a.special = t.value("special", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.single_word = t.value("single_word", false);
    by_id_[a.id] = tokens_.size();
    by_content_[a.content] = tokens_.size();
    max_id_ = std::max(max_id_, a.id);
    tokens_.push_back(std::move(a));
  }
  for (size_t i = 0; i < tokens_.size(); ++i)
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  for (auto& bucket : by_first_byte_)
    std::stable_sort(bucket.begin(), bucket.end(),
                     [&](size_t a, size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

const AddedToken* AddedVocab::find_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocab::find_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

const AddedToken* AddedVocab::match_at(std::string_view text, size_t pos) const {
  for (size_t idx : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
    const AddedToken& t = tokens_[idx];
    if (text.compare(pos, t.content.size(), t.content) != 0) continue;
    if (t.single_word) {
      const size_t end = pos + t.content.size();
      if ((pos > 0 && is_word_byte(text[pos - 1])) || (end < text.size() && is_word_byte(text[end]))) continue;
    }
    return &t;
  }
  return nullptr;
}

void AddedVocab::split(std::string_view text, std::vector<Segment>& out) const {
  if (tokens_.empty()) {
    if (!text.empty()) out.push_back({text, -1});
    return;
  }
  size_t start = 0;  // beginning of the pending plain text
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* t = by_first_byte_[static_cast<unsigned char>(text[pos])].empty() ? nullptr : match_at(text, pos);
    if (!t) {
      ++pos;
      continue;
    }
    size_t text_end = pos, next = pos + t->content.size();
    if (t->lstrip) while (text_end > start && is_space(text[text_end - 1])) --text_end;
    if (t->rstrip) while (next < text.size() && is_space(text[next])) ++next;
    if (text_end > start) out.push_back({text.substr(start, text_end - start), -1});
    out.push_back({text.substr(pos, t->content.size()), t->id});
    start = pos = next;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
}

}  // namespace loom::tokenizer
