#pragma once
#include "loom/model/causal_lm.h"

namespace loom::model {
std::unique_ptr<CausalLM> load_deepseek_v2(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o);
// Model-dependent checks of a parallel layout for DeepSeek-V2 (heads, experts, token plans).
void check_deepseek_v2_parallel(const io::ModelConfig& c, const parallel::ParallelConfig& p);
}  // namespace loom::model
