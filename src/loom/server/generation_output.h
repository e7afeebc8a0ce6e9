// A generating request's engine outputs turned into what its client receives, without sockets:
// SseEncoder for streams (`data: {...}` events, then `data: [DONE]`), AnswerCollector for one JSON
// answer at the end.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loom/server/api_error.h"
#include "loom/server/openai_protocol.h"
#include "loom/server/request_channel.h"

namespace loom::server {

// Error messages may quote a client's invalid UTF-8 (a parse error's context): it is replaced with
// U+FFFD rather than making the dump throw (found by schemathesis).
std::string dump_json(const nlohmann::json& j);

// "cmpl-..." or "chatcmpl-..." with a per-process salt and a counter.
std::string new_response_id(Endpoint endpoint);
int64_t unix_time();

// Server-sent events: one chunk per output that carries text (or logprobs, or the finish reason),
// the usage chunk when asked for, then `data: [DONE]`. A failed choice ends the stream with an
// error event and [DONE].
class SseEncoder {
 public:
  static constexpr std::string_view kHeartbeat = ":\n\n";  // an SSE comment, sent while no token comes

  // `parsed` without its engine request (only the response fields are read).
  SseEncoder(ParsedRequest parsed, const tokenizer::Tokenizer& tok);
  // The events for these outputs (maybe none); includes the stream's end once the last choice ends.
  std::string encode(const std::vector<ChoiceOutput>& outputs);
  bool done() const { return done_; }

 private:
  std::string encode_one(int i, const engine::RequestOutput& out);

  ParsedRequest parsed_;
  const tokenizer::Tokenizer& tok_;
  std::string id_;
  int64_t created_;
  std::vector<Generation> totals_;         // per choice
  std::vector<bool> first_;                // per choice: no chunk sent yet
  std::vector<ChatOutputParser> parsers_;  // per choice, when reasoning or tool calls are parsed
  int unfinished_;
  bool done_ = false;
};

// The non-streamed answer: gathers every choice, then renders one body.
class AnswerCollector {
 public:
  AnswerCollector(ParsedRequest parsed, const tokenizer::Tokenizer& tok);
  // True once the answer is complete: every choice finished, or one failed.
  bool add(const std::vector<ChoiceOutput>& outputs);
  // The 200 body, or the 500 ApiError of a failed choice.
  nlohmann::json response() const;
  const std::optional<ApiError>& failure() const { return failure_; }

 private:
  ParsedRequest parsed_;
  const tokenizer::Tokenizer& tok_;
  std::vector<Generation> choices_;
  std::optional<ApiError> failure_;
};

}  // namespace loom::server
