// Pre-tokenizers from tokenizer.json ("pre_tokenizer" field): Split (regex or literal, every
// behavior, invert), ByteLevel (optional GPT-2 regex and prefix space), Digits and Sequence.
// They cut normalized text into the words that BPE encodes one at a time.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::tokenizer {

// Words as views; `storage` owns any text a pre-tokenizer had to create (a prepended space).
struct Pieces {
  std::vector<std::string_view> words;
  std::deque<std::string> storage;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every word of `pieces` by its parts, in order.
  virtual void split(Pieces& pieces) const = 0;
  // True when this stage (or a stage inside it) is the ByteLevel pre-tokenizer.
  virtual bool is_byte_level() const { return false; }
};

// nullptr for a null spec; throws loom::Error naming an unsupported type.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& spec);

}  // namespace loom::tokenizer
