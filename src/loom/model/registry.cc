// Architecture name (config.json's `architectures[0]`) -> model constructor.
#include <functional>
#include <map>

#include "loom/model/causal_lm.h"
#include "loom/model/deepseek_v2.h"
#include "loom/model/gpt_oss.h"
#include "loom/model/mixtral.h"
#include "loom/model/moe_decoder.h"
#include "loom/model/qwen3_moe.h"

namespace loom::model {
namespace {

using Loader = std::function<std::unique_ptr<CausalLM>(const io::ModelConfig&, const io::WeightSource&,
                                                        const LoadOptions&)>;

const std::map<std::string, Loader>& loaders() {
  static const std::map<std::string, Loader> m = {
      {"Qwen3ForCausalLM", load_qwen3_moe},
      {"Qwen3MoeForCausalLM", load_qwen3_moe},
      {"MixtralForCausalLM", load_mixtral},
      {"DeepseekV2ForCausalLM", load_deepseek_v2},
      {"GptOssForCausalLM", load_gpt_oss},
  };
  return m;
}

}  // namespace

std::string supported_architectures() {
  std::string s;
  for (const auto& [name, _] : loaders()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

void check_parallel_fit(const io::ModelConfig& config, const parallel::ParallelConfig& parallel) {
  if (parallel.world_size() == 1) return;
  if (config.architecture == "DeepseekV2ForCausalLM") return check_deepseek_v2_parallel(config, parallel);
  if (loaders().count(config.architecture)) return check_moe_decoder_parallel(config, parallel);
  throw InvalidArgument(str("architecture '", config.architecture, "' runs on one rank only (", parallel.str(), ")"));
}

std::unique_ptr<CausalLM> load_causal_lm(const io::ModelConfig& config, const io::WeightSource& weights,
                                         const LoadOptions& options) {
  auto it = loaders().find(config.architecture);
  if (it == loaders().end())
    throw InvalidArgument(str("unsupported architecture '", config.architecture,
                              "' (supported: ", supported_architectures(), ")"));
  return it->second(config, weights, options);
}

}  // namespace loom::model
