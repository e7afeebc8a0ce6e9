// Qwen3 and Qwen3-MoE (Qwen3ForCausalLM, Qwen3MoeForCausalLM): pre-norm decoder with GQA
// attention, per-head q/k RMSNorm, NeoX RoPE, and either a SwiGLU MLP or a top-k softmax-routed
// mixture of SwiGLU experts per layer. Dense Qwen3 is the case where every layer is dense.
#include <cmath>

#include "loom/layers/ops.h"
#include "loom/layers/rope.h"
#include "loom/model/context.h"
#include "loom/model/qwen3_moe.h"
#include "loom/model/weight_loader.h"

namespace loom::model {
namespace ops = layers::ops;

namespace {

struct Attention {
  Tensor q_proj, k_proj, v_proj, o_proj, q_norm, k_norm;
};

struct Mlp {             // dense SwiGLU
  Tensor gate_up, down;  // [2I, H], [H, I]
};

struct Moe {
  Tensor router;             // [E, H]
  Tensor gate_up, down;      // [E, 2I, H], [E, H, I]
};

struct DecoderLayer {
  Tensor input_norm, post_attention_norm;
  Attention attn;
  bool sparse = false;
  Mlp mlp;
  Moe moe;
};

class Qwen3Moe final : public CausalLM {
 public:
  Qwen3Moe(const io::ModelConfig& c, const io::WeightSource& src, const LoadOptions& o)
      : config_(c), device_(o.device), dtype_(o.dtype) {
    check_config();
    const WeightLoader w{src, o.dtype, o.device};
    const int64_t hidden = c.hidden_size, d = c.head_dim, hq = c.num_attention_heads,
                  hk = c.num_key_value_heads;
    embed_ = w.get("model.embed_tokens.weight", {c.vocab_size, hidden});
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      DecoderLayer L;
      L.input_norm = w.get(p + "input_layernorm.weight", {hidden});
      L.post_attention_norm = w.get(p + "post_attention_layernorm.weight", {hidden});
      L.attn.q_proj = w.get(p + "self_attn.q_proj.weight", {hq * d, hidden});
      L.attn.k_proj = w.get(p + "self_attn.k_proj.weight", {hk * d, hidden});
      L.attn.v_proj = w.get(p + "self_attn.v_proj.weight", {hk * d, hidden});
      L.attn.o_proj = w.get(p + "self_attn.o_proj.weight", {hidden, hq * d});
      L.attn.q_norm = w.get(p + "self_attn.q_norm.weight", {d});
      L.attn.k_norm = w.get(p + "self_attn.k_norm.weight", {d});
      L.sparse = c.is_moe_layer(l);
      if (L.sparse) {
        const int64_t e = c.num_experts, inter = c.moe_intermediate_size;
        L.moe.router = w.get(p + "mlp.gate.weight", {e, hidden});
        L.moe.gate_up = w.stack_experts(p + "mlp.experts", e, {"gate_proj.weight", "up_proj.weight"}, inter, hidden);
        L.moe.down = w.stack_experts(p + "mlp.experts", e, {"down_proj.weight"}, hidden, inter);
      } else {
        const int64_t inter = c.intermediate_size;
        L.mlp.gate_up = Tensor::empty({2 * inter, hidden}, o.dtype, o.device);
        Tensor gate = L.mlp.gate_up.narrow(0, 0, inter), up = L.mlp.gate_up.narrow(0, inter, inter);
        gate.copy_from(src.load(p + "mlp.gate_proj.weight", {inter, hidden}, o.dtype));
        up.copy_from(src.load(p + "mlp.up_proj.weight", {inter, hidden}, o.dtype));
        L.mlp.down = w.get(p + "mlp.down_proj.weight", {hidden, inter});
      }
      layers_.push_back(std::move(L));
    }
    final_norm_ = w.get("model.norm.weight", {hidden});
    lm_head_ = c.tie_word_embeddings ? embed_ : w.get("lm_head.weight", {c.vocab_size, hidden});
    rope_ = layers::make_rope(c.rope, d, c.max_position_embeddings, o.device);
  }

  const io::ModelConfig& config() const override { return config_; }

  KvLayout kv_layout() const override {
    return {config_.num_hidden_layers, config_.num_key_value_heads, config_.head_dim, config_.head_dim, dtype_};
  }

  Device device() const override { return device_; }

  Tensor forward_device(const Tensor& ids, const layers::ForwardContext& ctx) override {
    const float eps = static_cast<float>(config_.rms_norm_eps);
    Tensor residual = ops::embedding(embed_, ids);
    Tensor x = ops::rms_norm(residual, layers_[0].input_norm, eps);
    for (size_t l = 0; l < layers_.size(); ++l) {
      const DecoderLayer& L = layers_[l];
      if (l > 0) x = ops::add_rms_norm(residual, x, L.input_norm, eps);
      x = attention(L.attn, static_cast<int64_t>(l), x, ctx);
      x = ops::add_rms_norm(residual, x, L.post_attention_norm, eps);
      x = L.sparse ? moe(L.moe, x) : mlp(L.mlp, x);
    }
    x = ops::add_rms_norm(residual, x, final_norm_, eps);
    return ops::linear(ops::gather_rows(x, ctx.logit_rows), lm_head_);
  }

 private:
  Tensor attention(const Attention& a, int64_t layer, const Tensor& x, const layers::ForwardContext& ctx) const {
    const int64_t t = x.size(0), d = config_.head_dim;
    Tensor q = ops::linear(x, a.q_proj).view({t, -1, d});
    Tensor k = ops::linear(x, a.k_proj).view({t, -1, d});
    Tensor v = ops::linear(x, a.v_proj).view({t, -1, d});
    ops::qk_norm_rope(q, k, &a.q_norm, &a.k_norm, static_cast<float>(config_.rms_norm_eps), rope_, ctx);
    ops::AttentionParams params;
    params.scale = 1.0f / std::sqrt(static_cast<float>(d));
    Tensor o = ops::attention(q, k, v, layer, params, ctx);
    return ops::linear(o.view({t, -1}), a.o_proj);
  }

  static Tensor mlp(const Mlp& m, const Tensor& x) {
    return ops::linear(ops::silu_and_mul(ops::linear(x, m.gate_up)), m.down);
  }

  Tensor moe(const Moe& m, const Tensor& x) const {
    const Tensor logits = ops::linear(x, m.router);  // the router softmax runs in f32 on any dtype
    const ops::Routing r = ops::route_topk_softmax(logits, config_.num_experts_per_tok, config_.norm_topk_prob);
    return ops::moe_experts(x, r, m.gate_up, m.down, /*expert_begin=*/0);
  }

  void check_config() const {
    const auto& c = config_;
    LOOM_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, "config: ", c.num_attention_heads,
               " attention heads are not a multiple of ", c.num_key_value_heads, " key/value heads");
    LOOM_CHECK(c.head_dim % 2 == 0, "config: head_dim ", c.head_dim, " must be even for RoPE");
    if (c.num_experts > 0)
      LOOM_CHECK(c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.num_experts, "config: num_experts_per_tok ",
                 c.num_experts_per_tok, " must be in [1, ", c.num_experts, "]");
  }

  io::ModelConfig config_;
  Device device_;
  DType dtype_;
  Tensor embed_, final_norm_, lm_head_;
  std::vector<DecoderLayer> layers_;
  ops::Rope rope_;
};

}  // namespace

std::unique_ptr<CausalLM> load_qwen3_moe(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o) {
  return std::make_unique<Qwen3Moe>(c, w, o);
}

}  // namespace loom::model
