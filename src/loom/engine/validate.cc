#include "loom/engine/validate.h"

#include <cmath>

namespace loom::engine {
namespace {

void check_range(const char* param, double v, double lo, double hi, bool lo_open) {
  const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
  if (!ok) throw RequestError(param, str(param, " must be in ", lo_open ? "(" : "[", lo, ", ", hi, "], got ", v));
}

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::abort: return "abort";
    case FinishReason::error: return "error";
    case FinishReason::none: break;
  }
  return "none";
}

void validate_request(const Request& r, const ModelLimits& limits) {
  const auto& p = r.params;
  if (r.prompt.empty()) throw RequestError("prompt", "the prompt is empty");
  for (int32_t id : r.prompt)
    if (id < 0 || id >= limits.vocab_size)
      throw RequestError("prompt", str("prompt token id ", id, " is outside the vocabulary [0, ", limits.vocab_size, ")"));
  check_range("temperature", p.temperature, 0, 2, false);
  check_range("top_p", p.top_p, 0, 1, true);
  check_range("min_p", p.min_p, 0, 1, false);
  check_range("frequency_penalty", p.frequency_penalty, -2, 2, false);
  check_range("presence_penalty", p.presence_penalty, -2, 2, false);
  check_range("repetition_penalty", p.repetition_penalty, 0, 2, true);
  if (p.top_k < -1 || p.top_k > limits.vocab_size)
    throw RequestError("top_k", str("top_k must be -1 (off) or in [1, ", limits.vocab_size, "], got ", p.top_k));
  if (p.logprobs > 20) throw RequestError("logprobs", str("at most 20 top logprobs, got ", p.logprobs));
  if (p.max_tokens < 1) throw RequestError("max_tokens", str("max_tokens must be at least 1, got ", p.max_tokens));
  for (const auto& s : p.stop)
    if (s.empty()) throw RequestError("stop", "stop strings must not be empty");
  for (int32_t id : p.stop_token_ids)
    if (id < 0 || id >= limits.vocab_size)
      throw RequestError("stop_token_ids", str("stop token id ", id, " is outside the vocabulary [0, ", limits.vocab_size, ")"));
  for (auto [id, bias] : p.logit_bias) {
    if (id < 0 || id >= limits.vocab_size)
      throw RequestError("logit_bias", str("logit_bias token id ", id, " is outside the vocabulary [0, ", limits.vocab_size, ")"));
    check_range("logit_bias", bias, -100, 100, false);
  }
  const int64_t prompt = static_cast<int64_t>(r.prompt.size());
  if (limits.context_length > 0 && prompt + p.max_tokens > limits.context_length)
    throw RequestError("max_tokens", str("the prompt (", prompt, " tokens) plus max_tokens (", p.max_tokens,
                                         ") is ", prompt + p.max_tokens, " tokens, beyond the model's context length of ",
                                         limits.context_length, " tokens"));
  if (limits.kv_capacity > 0 && prompt + p.max_tokens > limits.kv_capacity)
    throw RequestError("max_tokens", str("the prompt (", prompt, " tokens) plus max_tokens (", p.max_tokens,
                                         ") needs ", prompt + p.max_tokens, " KV positions but the KV pool holds ",
                                         limits.kv_capacity, " (raise --max-total-tokens)"));
}

}  // namespace loom::engine
