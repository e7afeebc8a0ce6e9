// Where the fuzz harnesses find the test data (the Qwen3 tokenizer), for libFuzzer builds and for
// the replay runs in CTest alike.
#pragma once
#include <string>

#include "loom/server/openai_protocol.h"
#include "loom/tokenizer/tokenizer.h"

namespace loom::fuzz {

inline const tokenizer::Tokenizer& qwen3() {
  static const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(std::string(LOOM_TEST_DATA) + "/tokenizers/qwen3");
  return tok;
}

// The request parser's context as the server builds it for Qwen3-30B-A3B's limits, with both
// output parsers on. No grammar engine: constraints are parsed but not compiled.
inline const server::ProtocolContext& protocol_context() {
  static const server::ProtocolContext ctx = [] {
    server::ProtocolContext c;
    c.tokenizer = &qwen3();
    c.limits.vocab_size = 151936;
    c.limits.context_length = 40960;
    c.limits.kv_capacity = 16384;
    c.served_model_name = "fuzz";
    c.tool_call_parser = "qwen3";
    c.reasoning_parser = "qwen3";
    return c;
  }();
  return ctx;
}

}  // namespace loom::fuzz
