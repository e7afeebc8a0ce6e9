// DeepSeek-V2 (DeepseekV2ForCausalLM), as transformers 5.17 runs it: a pre-norm decoder with
// multi-head latent attention (layers/mla_attention.h) and DeepSeekMoE. Layers below
// first_k_dense_replace (or off moe_layer_freq) have a dense SwiGLU MLP; the others route each
// token to top-k experts (softmax over all experts' logits; "greedy" or "group_limited_greedy"
// top-k; weights times routed_scaling_factor) and add n_shared_experts shared experts, one SwiGLU
// MLP of n_shared_experts · moe_intermediate_size that every token passes. On CUDA: DeepSeek's
// 512 + 64 latent on FlashInfer's MLA kernel, small ones on loom's (check_config).
#include "loom/model/deepseek_v2.h"

#include <cmath>

#include "loom/layers/mla_attention.h"
#include "loom/layers/mlp.h"
#include "loom/layers/moe.h"
#include "loom/layers/ops.h"
#include "loom/layers/ops_cuda.h"
#include "loom/layers/rope.h"
#include "loom/model/decoder_trunk.h"
#include "loom/model/moe_decoder.h"

namespace loom::model {
namespace ops = layers::ops;

namespace {

using DecoderLayer = model::DecoderLayer<layers::MlaAttention>;

const io::ModelConfig::Mla& mla_of(const io::ModelConfig& c) {
  LOOM_CHECK_ARG(c.mla, c.architecture, ": config.json has no 'kv_lora_rank' (multi-head latent attention)");
  return *c.mla;
}

layers::MlaShape mla_shape(const io::ModelConfig& c) {
  const auto& m = mla_of(c);
  layers::MlaShape s{c.hidden_size, c.num_attention_heads, m.q_lora_rank, m.kv_lora_rank,
                     m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim};
  // qk_head_dim^-0.5, times mscale² for YaRN with mscale_all_dim (transformers' yarn_apply_mscale).
  double scale = 1.0 / std::sqrt(static_cast<double>(m.qk_nope_head_dim + m.qk_rope_head_dim));
  if (c.rope.type != "default" && c.rope.mscale_all_dim.value_or(0) != 0) {
    const double mscale = layers::yarn_mscale(c.rope.factor, *c.rope.mscale_all_dim);
    scale *= mscale * mscale;
  }
  s.softmax_scale = static_cast<float>(scale);
  return s;
}

layers::MoeShape moe_shape(const io::ModelConfig& c) {
  const auto& m = mla_of(c);
  // transformers 5.17 never renormalises DeepSeek-V2's top-k weights (every released V2 config says
  // norm_topk_prob false); loom does when it is true, as SGLang and vLLM do.
  layers::MoeShape s{c.hidden_size, c.num_experts, c.num_experts_per_tok, c.moe_intermediate_size, c.norm_topk_prob,
                     layers::ExpertNames{}};
  const bool grouped = m.topk_method == "group_limited_greedy";
  s.groups = grouped ? m.n_group : 1;
  s.topk_group = grouped ? m.topk_group : 1;
  s.routed_scale = static_cast<float>(m.routed_scaling_factor);
  return s;
}

// Whether the latent attention runs on FlashInfer's MLA kernel (which reads the value from the
// cached key, so the cache holds no V).
bool latent_on_mla_kernel(const io::ModelConfig& c, const LoadOptions& o) {
  const auto& m = mla_of(c);
  return o.device.is_cuda() &&
         layers::ops::cuda::latent_attention_supported(o.device.index, m.kv_lora_rank, m.qk_rope_head_dim);
}

void check_config(const io::ModelConfig& c, const LoadOptions& o) {
  const auto& m = mla_of(c);
  // On CUDA, DeepSeek's latent (512 + 64) runs on FlashInfer's MLA kernel (an sm_90 GPU); small
  // latents (the test checkpoints) on loom's attention kernel, whose key tile is the key size
  // rounded up to 16, 32, 64 or 128 and whose value, the latent, must fit in half of it.
  const int64_t key_dim = m.kv_lora_rank + m.qk_rope_head_dim;
  const int64_t tile = key_dim <= 16 ? 16 : key_dim <= 32 ? 32 : key_dim <= 64 ? 64 : 128;
  const bool on_loom_kernel =
      key_dim <= 128 && key_dim % 8 == 0 && m.kv_lora_rank % 8 == 0 && m.kv_lora_rank <= tile / 2;
  LOOM_CHECK_ARG(o.device.is_cpu() || on_loom_kernel || latent_on_mla_kernel(c, o), c.architecture,
                 ": on CUDA, multi-head latent attention runs with kv_lora_rank 512 + qk_rope_head_dim 64 "
                 "(FlashInfer's MLA kernel, on an sm_90 GPU in a build with FlashInfer) or with kv_lora_rank + "
                 "qk_rope_head_dim <= 128; this model has ",
                 m.kv_lora_rank, " + ", m.qk_rope_head_dim, " on ", o.device.str(), "; run it with --device cpu");
  LOOM_CHECK_ARG(m.topk_method == "greedy" || m.topk_method == "group_limited_greedy", c.architecture,
                 ": topk_method '", m.topk_method, "' is not supported (DeepSeek-V2 routes by 'greedy' or "
                 "'group_limited_greedy'; 'noaux_tc' is DeepSeek-V3's)");
  if (m.topk_method == "group_limited_greedy") {
    LOOM_CHECK_ARG(c.num_experts % m.n_group == 0, c.architecture, ": n_group ", m.n_group, " does not divide the ",
                   c.num_experts, " routed experts");
    LOOM_CHECK_ARG(m.topk_group <= m.n_group, c.architecture, ": topk_group ", m.topk_group, " exceeds n_group ",
                   m.n_group);
  }
  LOOM_CHECK_ARG(!c.attention_bias, c.architecture, ": attention_bias is not supported");
}

class DeepseekV2 final : public CausalLM {
 public:
  DeepseekV2(const io::ModelConfig& c, const io::WeightSource& src, const LoadOptions& o)
      : config_(c), device_(o.device), ps_(checked_parallel_state(c, o, [&] { check_config(c, o); })),
        trunk_(layers::ShardLoader{src, o.dtype, o.device}, c, *ps_) {
    const layers::ShardLoader w{src, o.dtype, o.device};
    const layers::ParallelState& ps = *ps_;
    const layers::MlaShape mla = mla_shape(c);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      norms_.emplace_back(w, p, c.hidden_size);
      DecoderLayer L;
      L.attn = layers::MlaAttention(w, p + "self_attn.", mla, ps);
      L.sparse = c.is_moe_layer(l);
      if (L.sparse) {
        L.moe = layers::ParallelMoe(w, p + "mlp.", moe_shape(c), ps);
        L.mlp = layers::ParallelMlp(w, p + "mlp.shared_experts.", c.hidden_size,
                                    c.moe_intermediate_size * c.mla->n_shared_experts, ps);
      } else {
        L.mlp = layers::ParallelMlp(w, p + "mlp.", c.hidden_size, c.intermediate_size, ps);
      }
      layers_.push_back(std::move(L));
      if (o.progress) o.progress("loading weights", l + 1, c.num_hidden_layers);
    }
    rope_ = layers::make_rope(c.rope, mla.rope_dim, c.max_position_embeddings, o.device);
    kv_layout_ = mla.kv_layout(c.num_hidden_layers, o.dtype, /*value_cached=*/!latent_on_mla_kernel(c, o));
  }

  const io::ModelConfig& config() const override { return config_; }
  KvLayout kv_layout() const override { return kv_layout_; }
  Device device() const override { return device_; }

  Tensor forward_hidden(const Tensor& ids, const layers::ForwardContext& ctx) override {
    return trunk_.hidden(ids, norms_, layers_, rope_, ctx, [&](const DecoderLayer& L, const Tensor& x) {
      if (!L.sparse) return L.mlp.forward(x, ctx);
      Tensor routed = L.moe.forward(x, ctx);
      ops::add_(routed, L.mlp.forward(x, ctx));  // the shared experts
      return routed;
    });
  }
  Tensor logits(const Tensor& hidden, const layers::ForwardContext& ctx) override { return trunk_.logits(hidden, ctx); }

 protected:
  const layers::ParallelState* parallel_state() const override { return ps_.get(); }

 private:
  io::ModelConfig config_;
  Device device_;

  std::shared_ptr<const layers::ParallelState> ps_;
  DecoderTrunk trunk_;
  std::vector<LayerNorms> norms_;
  std::vector<DecoderLayer> layers_;
  ops::Rope rope_;
  KvLayout kv_layout_;
};

}  // namespace

std::unique_ptr<CausalLM> load_deepseek_v2(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o) {
  return std::make_unique<DeepseekV2>(c, w, o);
}

void check_deepseek_v2_parallel(const io::ModelConfig& c, const parallel::ParallelConfig& p) {
  io::ModelConfig mqa = c;  // MLA splits like MQA: heads over ATTN_TP, the one latent K/V head replicated
  mqa.num_key_value_heads = 1;
  check_moe_decoder_parallel(mqa, p);
}

}  // namespace loom::model
