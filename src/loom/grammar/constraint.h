// Grammar-constrained decoding on xgrammar's C++ core: a request's response_format (JSON object,
// JSON schema), regex, EBNF or forced tool call is compiled once against the model's vocabulary
// into a Constraint; each sequence walks it with its own Matcher, which gives the bitmask of the
// tokens allowed next (one bit per vocabulary id, 32 ids a word) and accepts the chosen token.
//
// Why xgrammar: it is the engine SGLang, vLLM and TensorRT-LLM use for this; its mask cache makes
// a step's mask cost microseconds for most grammar states, and its C++ core needs no Python.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "loom/tensor/error.h"
#include "loom/tokenizer/tokenizer.h"

namespace loom::grammar {

// A grammar the request asked for cannot be compiled (bad schema, regex or EBNF): a 400.
class InvalidConstraint : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// One function a forced tool call may name: its name and its parameters' JSON schema (text).
struct ToolSpec {
  std::string name;
  std::string parameters_schema;
};

struct Constraint;  // a compiled grammar (opaque), shared by every sequence that uses it

// Words of a token bitmask for `vocab` ids.
inline int64_t mask_words(int64_t vocab) { return (vocab + 31) / 32; }

// Compiles constraints for one model: its tokenizer, the model's vocabulary size (the logits'
// width, which may exceed the tokenizer's), and the ids that end a generation. The vocabulary
// is indexed on first use. Safe to call from many threads; compiled grammars are cached.
class Compiler {
 public:
  Compiler(tokenizer::Tokenizer tokenizer, int64_t model_vocab, std::vector<int32_t> stop_token_ids);
  ~Compiler();

  std::shared_ptr<const Constraint> json_object();
  std::shared_ptr<const Constraint> json_schema(const std::string& schema);
  std::shared_ptr<const Constraint> regex(const std::string& pattern);
  std::shared_ptr<const Constraint> ebnf(const std::string& grammar);  // root rule: `root`
  // Exactly one call, in the Qwen3/Hermes form `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`,
  // to one of `tools` (tool_choice "required": all of them; a named function: that one).
  std::shared_ptr<const Constraint> tool_call(const std::vector<ToolSpec>& tools);

  int64_t vocab() const { return model_vocab_; }

 private:
  struct Impl;
  Impl& impl();
  tokenizer::Tokenizer tokenizer_;
  int64_t model_vocab_;
  std::vector<int32_t> stop_token_ids_;
  std::once_flag once_;
  std::unique_ptr<Impl> impl_;
};

// One sequence's position in its constraint. When `start_after` is set the constraint applies
// only after that token has been generated (a reasoning model's `</think>`): until then every
// token is allowed and nothing is tracked.
class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const Constraint> constraint, std::optional<int32_t> start_after = std::nullopt);
  ~Matcher();
  Matcher(Matcher&&) noexcept;

  // Whether the next token is restricted at all (false: no mask needed this step).
  bool active() const;
  // Writes the allowed set into words[mask_words(vocab)]; the matcher must be active.
  void fill_mask(uint32_t* words);
  // The chosen token joins the matcher; false when the grammar rejects it.
  bool accept(int32_t token);
  // The grammar has ended (its stop token was accepted): nothing more may be generated.
  bool terminated() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Fills the masks of several active matchers at once, on a few threads when there are many:
// matchers[i] writes words at masks + i * mask_words(vocab).
void fill_masks(const std::vector<Matcher*>& matchers, uint32_t* masks, int64_t vocab);

}  // namespace loom::grammar
