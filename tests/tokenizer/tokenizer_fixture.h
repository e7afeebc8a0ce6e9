// The Qwen3 tokenizer from tests/data, loaded once per test binary (the tokenizer.json is 11 MB).
#pragma once
#include <string>

#include "loom/tokenizer/tokenizer.h"

namespace loom::tokenizer::testing {

inline std::string qwen3_dir() { return std::string(LOOM_TEST_DATA) + "/tokenizers/qwen3"; }

inline const Tokenizer& qwen3() {
  static const Tokenizer tok = Tokenizer::load(qwen3_dir());
  return tok;
}

}  // namespace loom::tokenizer::testing
