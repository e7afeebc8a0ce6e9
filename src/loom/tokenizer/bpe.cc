#include "loom/tokenizer/bpe.h"

#include <algorithm>
#include <functional>

#include "loom/tensor/error.h"
#include "loom/tokenizer/byte_level.h"

namespace loom::tokenizer {
namespace {

constexpr size_t kCacheCapacity = 1 << 16;
constexpr size_t kMaxCachedWordBytes = 64;

// Merges are ["a", "b"] (current format) or "a b" (older format).
std::pair<std::string, std::string> merge_parts(const nlohmann::json& m, size_t index) {
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    if (sp != std::string::npos && sp > 0 && sp + 1 < s.size() && s.find(' ', sp + 1) == std::string::npos)
      return {s.substr(0, sp), s.substr(sp + 1)};
  }
  throw Error(str("tokenizer.json: merge #", index, " is malformed: ", m.dump()));
}

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model) {
  if (!model.is_object() || model.value("type", std::string()) != "BPE")
    throw Error("tokenizer.json: model.type must be \"BPE\" (only byte-level BPE tokenizers are supported)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    throw Error("tokenizer.json: model.vocab is missing or not an object");
  if (!model.contains("merges") || !model["merges"].is_array())
    throw Error("tokenizer.json: model.merges is missing or not an array");
  if (!model.value("continuing_subword_prefix", std::string()).empty() ||
      !model.value("end_of_word_suffix", std::string()).empty())
    throw Error("tokenizer.json: BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  if (model.contains("ignore_merges") && model["ignore_merges"].is_boolean()) ignore_merges_ = model["ignore_merges"];

  const auto& vocab = model["vocab"];
  bytes_to_id_.reserve(vocab.size() * 2);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > (1 << 30))
      throw Error(str("tokenizer.json: vocab entry '", it.key(), "' has a bad id ", it.value().dump()));
    const auto id = it.value().get<int32_t>();
    auto bytes = byte_level_decode(it.key());
    if (!bytes) throw Error(str("tokenizer.json: vocab token '", it.key(), "' is not byte-level encoded"));
    if (static_cast<size_t>(id) >= id_to_bytes_.size()) {
      id_to_bytes_.resize(static_cast<size_t>(id) + 1);
      has_id_.resize(static_cast<size_t>(id) + 1, false);
    }
    id_to_bytes_[static_cast<size_t>(id)] = *bytes;
    has_id_[static_cast<size_t>(id)] = true;
    bytes_to_id_.emplace(std::move(*bytes), id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = bytes_to_id_.find(std::string(1, static_cast<char>(b)));
    if (it == bytes_to_id_.end()) throw Error(str("tokenizer.json: byte-level vocab lacks byte 0x", std::hex, b));
    byte_id_[b] = it->second;
  }

  const auto& merges = model["merges"];
  size_t capacity = 16;
  while (capacity < merges.size() * 2) capacity <<= 1;
  merge_table_.assign(capacity, MergeSlot{});
  merge_mask_ = capacity - 1;
  for (size_t i = 0; i < merges.size(); ++i) {
    auto [a, b] = merge_parts(merges[i], i);
    auto ab = byte_level_decode(a), bb = byte_level_decode(b);
    if (!ab || !bb) throw Error(str("tokenizer.json: merge #", i, " is not byte-level encoded"));
    auto ia = bytes_to_id_.find(*ab), ib = bytes_to_id_.find(*bb), im = bytes_to_id_.find(*ab + *bb);
    if (ia == bytes_to_id_.end() || ib == bytes_to_id_.end() || im == bytes_to_id_.end())
      throw Error(str("tokenizer.json: merge #", i, " (", a, " ", b, ") uses a token missing from the vocab"));
    add_merge(pair_key(ia->second, ib->second), Merge{static_cast<int32_t>(i), im->second});
  }
}

std::optional<int32_t> BpeModel::id_of(std::string_view bytes) const {
  auto it = bytes_to_id_.find(std::string(bytes));
  if (it == bytes_to_id_.end()) return std::nullopt;
  return it->second;
}

namespace {
uint64_t mix(uint64_t x) {  // splitmix64 finalizer: spreads (a, b) pairs over the table
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

void BpeModel::add_merge(uint64_t key, Merge m) {
  for (uint64_t i = mix(key) & merge_mask_;; i = (i + 1) & merge_mask_) {
    MergeSlot& slot = merge_table_[i];
    if (slot.key == key) {  // a repeated merge takes its last rank, as HF's map does
      slot.merge = m;
      return;
    }
    if (slot.key == kEmptyKey) {
      slot = {key, m};
      return;
    }
  }
}

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
  const uint64_t key = pair_key(a, b);
  for (uint64_t i = mix(key) & merge_mask_;; i = (i + 1) & merge_mask_) {
    const MergeSlot& slot = merge_table_[i];
    if (slot.key == key) return &slot.merge;
    if (slot.key == kEmptyKey) return nullptr;
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    if (auto id = id_of(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  // Symbols form a doubly linked list over the word's bytes; a merge joins a symbol with its
  // right neighbour. The queue holds candidate merges keyed by (rank, position): the lowest rank
  // wins and, among equal ranks, the leftmost, as in Hugging Face's BPE.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = static_cast<int32_t>(word.size());
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Candidate> heap;
  sym.resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    sym[static_cast<size_t>(i)] = {byte_id_[static_cast<unsigned char>(word[static_cast<size_t>(i)])], i - 1,
                                   i + 1 < n ? i + 1 : -1, true};
  heap.clear();
  const auto later = std::greater<Candidate>();  // min-heap on (rank, position)
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = sym[static_cast<size_t>(left)].next;
    if (right < 0) return;
    const int32_t a = sym[static_cast<size_t>(left)].id, b = sym[static_cast<size_t>(right)].id;
    if (const Merge* m = find_merge(a, b)) {
      heap.push_back({m->rank, left, a, b});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = sym[static_cast<size_t>(c.pos)];
    // Skip stale candidates: a side was merged away or changed since this entry was queued.
    if (!left.alive || left.id != c.left_id || left.next < 0) continue;
    Symbol& right = sym[static_cast<size_t>(left.next)];
    if (right.id != c.right_id) continue;
    left.id = find_merge(c.left_id, c.right_id)->merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[static_cast<size_t>(right.next)].prev = c.pos;
    consider(left.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) out.push_back(sym[static_cast<size_t>(i)].id);
}

}  // namespace loom::tokenizer
