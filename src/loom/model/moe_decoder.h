// The decoder Qwen3, Qwen3-MoE, Mixtral and gpt-oss share (moe_decoder.cc), and what tells them apart.
#pragma once
#include <string>

#include "loom/layers/moe.h"
#include "loom/model/causal_lm.h"

namespace loom::model {

struct DecoderFamily {
  bool qk_norm = true;                  // per-head RMSNorm of q and k before RoPE (Qwen3)
  std::string moe_prefix = "mlp.";      // the sparse block under "model.layers.N."
  layers::ExpertNames expert_names;     // router and expert projection names
  bool renormalize = false;             // top-k weights renormalised whatever config.json says
  bool sliding_window = false;          // config.json's sliding_window applies (where layer_types says so)
  bool attention_sinks = false;         // gpt-oss: "self_attn.sinks"
  bool fused_biased_experts = false;    // gpt-oss's stacked, biased experts (layers::MoeShape)
  bool mxfp4_experts = false;           // ... stored in MXFP4 (the released gpt-oss checkpoints)
  float swiglu_limit = 0.0f, swiglu_alpha = 1.0f;  // gpt-oss's clamped SwiGLU (> 0 limit)
};

std::unique_ptr<CausalLM> load_moe_decoder(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o,
                                           const DecoderFamily& family);
// Model-dependent checks of a parallel layout for these models (heads, experts, token plans).
void check_moe_decoder_parallel(const io::ModelConfig& c, const parallel::ParallelConfig& p);

}  // namespace loom::model
