// gpt-oss (GptOssForCausalLM): the shared decoder with biases on q/k/v/o, a learned sink logit per
// head in every attention softmax, a sliding window on the layers `layer_types` marks
// "sliding_attention" (full attention on the others), YaRN RoPE, and in every layer experts stacked
// in two biased tensors with the clamped SwiGLU (alpha 1.702, limit 7), routed by a biased router
// whose top-k logits are softmaxed (= the softmax over all, renormalised over the top k). The
// experts load from bf16 or from the released checkpoints' MXFP4 (io/mxfp4.h).
#include "loom/model/gpt_oss.h"

#include "loom/model/moe_decoder.h"

namespace loom::model {

std::unique_ptr<CausalLM> load_gpt_oss(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o) {
  DecoderFamily f;
  // The released checkpoints store the experts in MXFP4 ("…_blocks" / "…_scales"), dequantized to
  // the model's dtype at load; transformers' dequantized save (and dummy weights) has the bf16 names.
  if (c.raw.contains("quantization_config")) {
    const nlohmann::json& q = c.raw["quantization_config"];
    const std::string method = q.is_object() ? q.value("quant_method", "") : "";
    if (method != "mxfp4")
      throw InvalidArgument(str("gpt-oss: quantization_config.quant_method '", method,
                                "' is not supported (supported: mxfp4, or an unquantized checkpoint)"));
    const std::string first = "model.layers.0.mlp.experts.";
    f.mxfp4_experts = w.has(first + "gate_up_proj_blocks") && !w.has(first + "gate_up_proj");
  }
  f.qk_norm = false;
  f.expert_names.router = "router";
  f.renormalize = true;
  f.sliding_window = true;
  f.attention_sinks = true;
  f.fused_biased_experts = true;
  f.swiglu_alpha = 1.702f;
  f.swiglu_limit = 7.0f;
  return load_moe_decoder(c, w, o, f);
}

}  // namespace loom::model
