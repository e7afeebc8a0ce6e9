// Qwen3 and Qwen3-MoE (Qwen3ForCausalLM, Qwen3MoeForCausalLM): the shared decoder with per-head
// q/k RMSNorm; experts under "mlp." named gate_proj / up_proj / down_proj; top-k weights
// renormalised when config.json's norm_topk_prob says so. Dense Qwen3 has no MoE layer.
#include "loom/model/qwen3_moe.h"

#include "loom/model/moe_decoder.h"

namespace loom::model {

std::unique_ptr<CausalLM> load_qwen3_moe(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o) {
  return load_moe_decoder(c, w, o, DecoderFamily{});
}

}  // namespace loom::model
