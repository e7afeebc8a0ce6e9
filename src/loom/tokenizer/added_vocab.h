// Added tokens of tokenizer.json ("added_tokens"): special tokens such as <|im_end|> and extra
// tokens such as <think>. They are found in the raw text before normalization and
// pre-tokenization, leftmost-longest, and map straight to their ids.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::tokenizer {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special = false;
  bool lstrip = false, rstrip = false, single_word = false;
};

// A stretch of input: either plain text (id < 0) or one added token.
struct Segment {
  std::string_view text;
  int32_t id = -1;
};

class AddedVocab {
 public:
  AddedVocab() = default;
  explicit AddedVocab(const nlohmann::json& added_tokens);  // throws loom::Error on malformed entries

  // Cuts text into plain-text segments and added-token segments, in order.
  void split(std::string_view text, std::vector<Segment>& out) const;

  const AddedToken* find_id(int32_t id) const;
  std::optional<int32_t> find_content(std::string_view content) const;
  int32_t max_id() const { return max_id_; }  // -1 when empty

 private:
  // Length of the longest added token matching at text[pos] (with its whitespace rules), 0 if none.
  const AddedToken* match_at(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  std::array<std::vector<size_t>, 256> by_first_byte_;  // candidates, longest first
  int32_t max_id_ = -1;
};

}  // namespace loom::tokenizer
