// A request's output text, token by token: incremental detokenizing plus stop strings. Text that
// could be the start of a stop string is held back until it is known not to be one, so a
// stop string never reaches the client, not even in part.
#pragma once
#include <string>
#include <vector>

#include "loom/tokenizer/tokenizer.h"

namespace loom::engine {

class TextStream {
 public:
  TextStream(const tokenizer::Tokenizer& tokenizer, bool skip_special, std::vector<std::string> stop);

  // Text that is safe to emit after `token`; once a stop string appears, stopped() is true and
  // the text up to (not including) it has been returned.
  std::string push(int32_t token);
  // The held-back text, when generation ends for another reason.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::string release_safe_text();

  tokenizer::IncrementalDetokenizer detok_;
  int32_t vocab_size_;
  std::vector<std::string> stop_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace loom::engine
