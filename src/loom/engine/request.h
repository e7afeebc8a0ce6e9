// What a client asks the engine for (prompt ids + sampling parameters) and what it gets back,
// one RequestOutput per step in which something happened, the last one with `finished` set.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loom/tensor/error.h"

namespace loom::grammar {
struct Constraint;
}

namespace loom::engine {

struct SamplingParams {
  double temperature = 1.0;        // 0 = greedy (argmax)
  double top_p = 1.0;              // (0, 1]
  int64_t top_k = -1;              // -1 or 0 = off
  double min_p = 0.0;              // [0, 1]
  std::optional<uint64_t> seed;    // per-request RNG; unset = random
  double frequency_penalty = 0.0;  // [-2, 2], per occurrence in the output
  double presence_penalty = 0.0;   // [-2, 2], once per token present in the output
  double repetition_penalty = 1.0; // (0, 2], on prompt and output tokens (HF style)
  int64_t max_tokens = 16;
  std::vector<std::string> stop;           // stop strings (not included in the text)
  std::vector<int32_t> stop_token_ids;     // stop tokens (not included in the text)
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  int64_t logprobs = -1;                   // -1: none; k >= 0: the chosen token's logprob + top k
  // OpenAI's logit_bias: added to the token's logit before any penalty or selection, [-100, 100].
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Grammar-constrained decoding (response_format, regex, EBNF, a forced tool call): only tokens
  // the grammar allows are sampled, and the grammar's end finishes the request. With
  // constraint_after set, the constraint starts once that token was generated (`</think>`).
  std::shared_ptr<const grammar::Constraint> constraint;
  std::optional<int32_t> constraint_after;
};

// Bad request input: the server answers 400 with `param` naming the offending field.
class RequestError : public InvalidArgument {
 public:
  RequestError(std::string param, const std::string& message)
      : InvalidArgument(message), param_(std::move(param)) {}
  const std::string& param() const { return param_; }

 private:
  std::string param_;
};

// The engine's waiting queue is full (the server answers 503).
class QueueFull : public Error {
 public:
  using Error::Error;
};

// The engine is shutting down and accepts nothing new (503).
class ShuttingDown : public Error {
 public:
  using Error::Error;
};

// The runner cannot run steps any more (a rank failed mid-step); only a restart helps (503).
class RunnerStopped : public Error {
 public:
  using Error::Error;
};

enum class FinishReason { none, stop, length, abort, error };
const char* finish_reason_name(FinishReason r);

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens, best first
};

struct RequestOutput {
  uint64_t request_id = 0;
  std::string text;                   // new text since the previous output
  std::vector<int32_t> token_ids;     // new tokens since the previous output
  std::vector<TokenLogprob> logprobs; // one per new token when asked for
  bool finished = false;
  FinishReason finish_reason = FinishReason::none;
  std::string error;                  // finish_reason == error: what went wrong
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;      // so far
  int64_t cached_tokens = 0;          // prompt tokens served from the prefix cache
};

// Called on the engine thread; must be quick and must not call back into the engine's
// blocking API (submit/abort are fine).
using OutputCallback = std::function<void(const RequestOutput&)>;

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams params;
  OutputCallback on_output;
  // Nonzero: one of the n choices of a prompt (the same value for all n). The first to be admitted
  // prefills it; the others wait for that and then take its KV from the prefix cache.
  uint64_t prefix_group = 0;
};

}  // namespace loom::engine
