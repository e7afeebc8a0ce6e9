// The byte-level BPE model of tokenizer.json ("model": {"type": "BPE", ...}). Tokens are kept as
// raw bytes (the byte-level spelling is undone at load), and a word is encoded by repeatedly
// applying its lowest-ranked merge, found through a priority queue: O(n log n) per word, with a
// cache of recent words in front of it.
#pragma once
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::tokenizer {

class BpeModel {
 public:
  // Throws loom::Error when the model is not a byte-level BPE or its vocab/merges are inconsistent.
  explicit BpeModel(const nlohmann::json& model);

  // Appends the ids of one pre-tokenized word (raw bytes).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  int32_t size() const { return static_cast<int32_t>(id_to_bytes_.size()); }  // ids 0..size()-1 (gaps are empty)
  const std::string& bytes_of(int32_t id) const { return id_to_bytes_[static_cast<size_t>(id)]; }
  std::optional<int32_t> id_of(std::string_view bytes) const;
  bool has_id(int32_t id) const { return id >= 0 && id < size() && has_id_[static_cast<size_t>(id)]; }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* find_merge(int32_t a, int32_t b) const;
  void add_merge(uint64_t key, Merge m);
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  std::vector<std::string> id_to_bytes_;
  std::vector<bool> has_id_;  // ids may have gaps
  std::unordered_map<std::string, int32_t> bytes_to_id_;
  // Merges in an open-addressing table (one probe usually; the hot lookup of encoding).
  struct MergeSlot {
    uint64_t key = kEmptyKey;
    Merge merge{};
  };
  static constexpr uint64_t kEmptyKey = ~0ull;
  std::vector<MergeSlot> merge_table_;
  uint64_t merge_mask_ = 0;
  int32_t byte_id_[256];
  bool ignore_merges_ = false;

  // Word cache (words are Zipf-distributed, so most lookups hit); cleared when full.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace loom::tokenizer
