// OpenAI request bodies (completions when the first byte is even, chat otherwise) through the
// server's parser and the engine's validation, as the server runs them: a bad body is an ApiError
// or a RequestError (the server's 4xx), never another exception or a crash. Constraints are
// parsed but not compiled (no grammar engine here: compiling fuzzed grammars is xgrammar's fuzzing).
#include <cstdint>
#include <string>

#include "fuzz_data.h"
#include "loom/engine/validate.h"
#include "loom/server/api_error.h"
#include "loom/server/openai_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const loom::server::ProtocolContext& ctx = loom::fuzz::protocol_context();
  const auto endpoint = data[0] % 2 ? loom::server::Endpoint::chat : loom::server::Endpoint::completions;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const auto parsed = loom::server::parse_request(endpoint, body, ctx);
    loom::engine::validate_request(parsed.request, ctx.limits);
  } catch (const loom::server::ApiError&) {
  } catch (const loom::engine::RequestError&) {
  }
  return 0;
}
