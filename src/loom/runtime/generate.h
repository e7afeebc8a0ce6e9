// One-request helpers over a Runner (the CLI's logits/generate, tests): prefill a prompt into
// freshly allocated pages, decode greedily one token per step, give the pages back.
#pragma once
#include <vector>

#include "loom/runtime/model_runner.h"

namespace loom::runtime {

// Throws InvalidArgument for an empty prompt or an id outside the vocabulary.
void check_prompt(const std::vector<int32_t>& prompt, int64_t vocab_size);

// Logits of the last prompt position [1, V], or of every position [T, V].
Tensor prompt_logits(Runner& runner, const std::vector<int32_t>& prompt, bool all_positions);

// Greedy continuation of `max_new_tokens` tokens (no EOS stop), KV-cached: each new token
// costs one position.
std::vector<int32_t> generate_greedy(Runner& runner, const std::vector<int32_t>& prompt, int64_t max_new_tokens);

// Index of the largest value of each row of f32 logits [R, V]; ties go to the lower index.
std::vector<int32_t> argmax_rows(const Tensor& logits);

}  // namespace loom::runtime
