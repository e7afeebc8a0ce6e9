// A Hugging Face byte-level BPE tokenizer (Qwen2/Qwen3, DeepSeek, GPT-2 family) loaded from
// tokenizer.json and tokenizer_config.json, with its Jinja chat template.
//
//   auto tok = loom::tokenizer::Tokenizer::load("path/to/model");
//   auto ids = tok.encode("Hello");              // same ids as HF tokenizers
//   std::string text = tok.decode(ids);
//
// A Tokenizer is cheap to copy (shared, immutable state) and safe to use from many threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::tokenizer {

class Tokenizer {
 public:
  // Loads <dir>/tokenizer.json (required) and <dir>/tokenizer_config.json (optional: eos token,
  // chat template). Throws loom::Error naming the file and the problem.
  static Tokenizer load(const std::string& dir);
  // Same, from the two files' contents (config may be null).
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, const nlohmann::ordered_json& config);

  // Text to ids. Added/special tokens in the text are recognized. Invalid UTF-8 is replaced by
  // U+FFFD first. add_special_tokens applies the post-processor (e.g. a BOS token).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Ids to text; bytes that do not form UTF-8 become U+FFFD. Throws loom::InvalidArgument for an
  // id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const;  // including added tokens
  // Id of an added token (by content) or of a vocab token (by its tokenizer.json spelling, e.g. "Ġthe").
  std::optional<int32_t> token_id(std::string_view token) const;
  bool is_special(int32_t id) const;
  std::optional<int32_t> eos_token_id() const;  // from tokenizer_config.json's eos_token

  // The raw bytes token `id` stands for (throws InvalidArgument when out of range).
  const std::string& token_bytes(int32_t id) const;

  bool has_chat_template() const;
  // Renders the chat template. messages: array of {role, content, ...}; tools: array or null.
  // enable_thinking is passed to the template only when set. Throws loom::InvalidArgument when
  // the template rejects the input (raise_exception) and loom::Error for template errors.
  std::string apply_chat_template(const nlohmann::json& messages, const nlohmann::json& tools,
                                  bool add_generation_prompt, std::optional<bool> enable_thinking) const;
  // Same, keeping the key order of the caller's objects (tojson output follows it, as in Python).
  std::string apply_chat_template(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                  bool add_generation_prompt, std::optional<bool> enable_thinking) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Streaming detokenizer: push() returns the text completed by each new token, never a partial
// UTF-8 character; the concatenation of all push() results and flush() equals
// decode(all ids, skip_special).
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // whatever is still pending (an unfinished character becomes U+FFFD)

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of an unfinished UTF-8 character
};

}  // namespace loom::tokenizer
