// OpenAI request bodies to engine requests, and engine outputs to OpenAI response bodies
// (/v1/completions and /v1/chat/completions, streamed or not). Parse errors are ApiErrors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/engine/request.h"
#include "loom/server/chat_output_parser.h"
#include "loom/engine/validate.h"
#include "loom/grammar/constraint.h"
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
  int n = 1;              // choices returned
  int best_of = 1;        // choices generated: `request` is submitted best_of times (seed + i each when seeded)
  bool parse_reasoning = false;   // chat: <think> text goes to reasoning_content (--reasoning-parser)
  bool reasoning_open = false;    // ... and the prompt ends inside <think>: the answer starts as reasoning
  bool parse_tool_calls = false;  // chat with tools: <tool_call> text goes to tool_calls (--tool-call-parser)
};

struct ProtocolContext {
  const tokenizer::Tokenizer* tokenizer = nullptr;
  engine::ModelLimits limits;
  std::string served_model_name;
  std::string tool_call_parser;  // "" (off), qwen3 or hermes
  std::string reasoning_parser;  // "" (off) or qwen3
  grammar::Compiler* grammar = nullptr;  // compiles response_format / regex / ebnf / forced tool calls
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

// best_of: the n candidates with the highest mean logprob per token (needs their token logprobs).
std::vector<Generation> best_choices(std::vector<Generation> candidates, int n);

// Non-streamed response body: choice i is choices[i]; `usage` (default: the choices') counts every
// candidate generated when best_of > n.
nlohmann::json response_json(const ParsedRequest& req, const std::string& id, int64_t created,
                             const std::vector<Generation>& choices, const tokenizer::Tokenizer& tok,
                             const Generation* usage = nullptr);
// One streamed chunk for choice `index`'s output `delta` (the part of the generation it carries).
// `first` (the choice's first chunk) adds the assistant role to a chat delta. `parsed`: the delta
// split by the output parsers (chat with parse_reasoning/parse_tool_calls); `tool_calls_made`: the
// choice called a tool, so a stop finishes with "tool_calls".
nlohmann::json chunk_json(const ParsedRequest& req, const std::string& id, int64_t created, const Generation& delta,
                          bool first, const tokenizer::Tokenizer& tok, int index = 0, const ChatDelta* parsed = nullptr,
                          bool tool_calls_made = false);
// The usage-only chunk sent at the end when stream_options.include_usage is set.
nlohmann::json usage_chunk_json(const ParsedRequest& req, const std::string& id, int64_t created,
                                const Generation& total);

}  // namespace loom::server
