#include "loom/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <vector>

#include "loom/tensor/error.h"

namespace loom::tokenizer {
namespace {

int form_options(std::string_view form) {
  if (form == "NFC") return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
  if (form == "NFD") return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
  if (form == "NFKC") return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  if (form == "NFKD") return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  throw Error(str("unknown Unicode normalization form '", form, "'"));
}

void map_chunk(std::string_view chunk, int options, std::string& out) {
  utf8proc_uint8_t* dst = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(chunk.data()),
                        static_cast<utf8proc_ssize_t>(chunk.size()), &dst,
                        static_cast<utf8proc_option_t>(options));
  if (n < 0) throw Error(str("Unicode normalization failed: ", utf8proc_errmsg(n)));
  out.append(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
}

class FormNormalizer : public Normalizer {
 public:
  explicit FormNormalizer(std::string form) : form_(std::move(form)) {}
  std::string apply(std::string_view text) const override { return unicode_normalize(text, form_); }

 private:
  std::string form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  std::string apply(std::string_view text) const override {
    std::string out;
    out.reserve(text.size());
    auto p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(text.size());
    while (left > 0) {
      utf8proc_int32_t cp;
      auto n = utf8proc_iterate(p, left, &cp);
      if (n <= 0) throw Error("Lowercase normalizer: invalid UTF-8");
      utf8proc_uint8_t buf[4];
      auto m = utf8proc_encode_char(utf8proc_tolower(cp), buf);
      out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(m));
      p += n;
      left -= n;
    }
    return out;
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string_view text) const override {
    auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    size_t b = 0, e = text.size();
    if (left_) while (b < e && is_ws(text[b])) ++b;
    if (right_) while (e > b && is_ws(text[e - 1])) --e;
    return std::string(text.substr(b, e - b));
  }

 private:
  bool left_, right_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  std::string apply(std::string_view text) const override {
    if (from_.empty()) return std::string(text);
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = text.find(from_, pos)) != std::string_view::npos; pos = hit + from_.size()) {
      out.append(text.substr(pos, hit - pos));
      out += to_;
    }
    out.append(text.substr(pos));
    return out;
  }

 private:
  std::string from_, to_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string apply(std::string_view text) const override {
    return text.empty() ? std::string() : prefix_ + std::string(text);
  }

 private:
  std::string prefix_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string apply(std::string_view text) const override {
    std::string s(text);
    for (const auto& p : parts_) s = p->apply(s);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::string unicode_normalize(std::string_view text, std::string_view form) {
  const int options = form_options(form);
  // ASCII is stable under every form and never combines with what precedes it, so only the
  // non-ASCII runs (plus the one ASCII base character before each) go through utf8proc.
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && static_cast<unsigned char>(text[j]) < 0x80) ++j;
    if (j == text.size()) {
      out.append(text.substr(i));
      break;
    }
    size_t start = j > i ? j - 1 : j;  // keep a possible base character with its marks
    out.append(text.substr(i, start - i));
    size_t k = j;
    while (k < text.size() && static_cast<unsigned char>(text[k]) >= 0x80) ++k;
    map_chunk(text.substr(start, k - start), options, out);
    i = k;
  }
  return out;
}

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& spec) {
  if (spec.is_null()) return nullptr;
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    throw Error("tokenizer.json: normalizer must be an object with a \"type\"");
  const std::string type = spec["type"];
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return std::make_unique<FormNormalizer>(type);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(spec.value("strip_left", true), spec.value("strip_right", true));
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(spec.at("prepend").get<std::string>());
  if (type == "Replace") {
    const auto& pattern = spec.at("pattern");
    if (!pattern.contains("String"))
      throw Error("tokenizer.json: Replace normalizer with a regex pattern is not supported");
    return std::make_unique<ReplaceNormalizer>(pattern["String"].get<std::string>(), spec.at("content").get<std::string>());
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& p : spec.at("normalizers"))
      if (auto n = make_normalizer(p)) parts.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  throw Error(str("tokenizer.json: unsupported normalizer type '", type,
                  "' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend, Sequence)"));
}

}  // namespace loom::tokenizer
