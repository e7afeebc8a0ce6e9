// Mixtral (MixtralForCausalLM): the shared decoder without q/k norms, a sliding window where
// config.json sets one, and in every layer a softmax router over "block_sparse_moe.experts.N"
// (w1 = gate, w3 = up, w2 = down) whose top-k weights are always renormalised (HF's
// MixtralSparseMoeBlock divides them by their sum).
#include "loom/model/mixtral.h"

#include "loom/model/moe_decoder.h"

namespace loom::model {

std::unique_ptr<CausalLM> load_mixtral(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o) {
  DecoderFamily f;
  f.qk_norm = false;
  f.moe_prefix = "block_sparse_moe.";
  f.expert_names = {"gate", "w1", "w3", "w2"};
  f.renormalize = true;
  f.sliding_window = true;
  return load_moe_decoder(c, w, o, f);
}

}  // namespace loom::model
