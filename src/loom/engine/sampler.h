// Picks a request's next token from its row of logits: penalties, then greedy argmax
// (temperature 0) or temperature / top-k / top-p / min-p sampling with the request's own RNG,
// so a seeded request draws the same tokens whatever else shares its batch.
#pragma once
#include <cstdint>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "loom/engine/request.h"
#include "loom/runtime/device_sampler.h"

namespace loom::engine {

class Sampler {
 public:
  // `prompt` seeds the repetition-penalty history; `seed` is used when params.seed is unset.
  Sampler(const SamplingParams& params, const std::vector<int32_t>& prompt, uint64_t seed);

  // Next token from f32 logits[vocab]; fills `logprob` (raw model distribution) when non-null.
  // `allowed` (a grammar's bitmask, bit t of word t / 32) restricts the draw to its tokens.
  int32_t sample(const float* logits, int64_t vocab, TokenLogprob* logprob, const uint32_t* allowed = nullptr);

  // The same draw made on the device (runtime::DeviceSampler): fills `row` (drawing u from the
  // RNG exactly as sample() would) and appends the row's logit edits; accept() must follow with
  // the token the device chose.
  void plan_device(runtime::SampleRowPlan& row, std::vector<runtime::LogitEdit>& edits, int64_t vocab);
  void accept(int32_t token) { observe(token); }

 private:
  void observe(int32_t token);  // the token joins the output (penalty history)

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> seen_;              // prompt + output (repetition penalty)
  std::unordered_map<int32_t, int64_t> counts_;   // output only (frequency/presence)
  std::vector<float> work_;
  std::vector<int32_t> candidates_;
};

// log-softmax of the raw row: the chosen token's logprob and the `top` most likely tokens.
TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t chosen, int64_t top);

}  // namespace loom::engine
