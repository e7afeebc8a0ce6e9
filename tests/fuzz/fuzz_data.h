// Where the fuzz harnesses find the test data (the Qwen3 tokenizer), for libFuzzer builds and for
// the replay runs in CTest alike.
#pragma once
#include <string>

#include "loom/tokenizer/tokenizer.h"

namespace loom::fuzz {

inline const tokenizer::Tokenizer& qwen3() {
  static const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(std::string(LOOM_TEST_DATA) + "/tokenizers/qwen3");
  return tok;
}

}  // namespace loom::fuzz
