#pragma once
#include "loom/model/causal_lm.h"

namespace loom::model {
std::unique_ptr<CausalLM> load_gpt_oss(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o);
}  // namespace loom::model
