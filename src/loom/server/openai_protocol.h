// OpenAI request bodies to engine requests, and engine outputs to OpenAI response bodies
// (/v1/completions and /v1/chat/completions, streamed or not). Parse errors are ApiErrors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/engine/request.h"
#include "loom/engine/validate.h"
#include "loom/tokenizer/tokenizer.h"

namespace loom::server {

enum class Endpoint { completions, chat };

struct ParsedRequest {
  Endpoint endpoint = Endpoint::completions;
  engine::Request request;  // prompt + params (on_output left to the caller)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool want_logprobs = false;
  std::string model;
  std::string echo_text;  // completions with echo: the prompt's text, which leads the answer
  int n = 1;              // choices: `request` is submitted n times (seed + i each when seeded)
};

struct ProtocolContext {
  const tokenizer::Tokenizer* tokenizer = nullptr;
  engine::ModelLimits limits;
  std::string served_model_name;
};

// `body` is the raw request body. Throws ApiError (400 for bad input, 404 for an unknown model).
ParsedRequest parse_request(Endpoint endpoint, const std::string& body, const ProtocolContext& ctx);

// Everything generated for one request, gathered from its outputs.
struct Generation {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<engine::TokenLogprob> logprobs;
  engine::FinishReason finish_reason = engine::FinishReason::none;
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  void add(const engine::RequestOutput& out);
};

nlohmann::json usage_json(const Generation& g);
// The usage of n choices of one prompt: the prompt counted once, the completions added up.
Generation combined_usage(const std::vector<Generation>& choices);

// Non-streamed response body: choice i is choices[i].
nlohmann::json response_json(const ParsedRequest& req, const std::string& id, int64_t created,
                             const std::vector<Generation>& choices, const tokenizer::Tokenizer& tok);
// One streamed chunk for choice `index`'s output `delta` (the part of the generation it carries).
// `first` (the choice's first chunk) adds the assistant role to a chat delta.
nlohmann::json chunk_json(const ParsedRequest& req, const std::string& id, int64_t created, const Generation& delta,
                          bool first, const tokenizer::Tokenizer& tok, int index = 0);
// The usage-only chunk sent at the end when stream_options.include_usage is set.
nlohmann::json usage_chunk_json(const ParsedRequest& req, const std::string& id, int64_t created,
                                const Generation& total);

}  // namespace loom::server
