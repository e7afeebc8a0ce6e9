// The pre-norm decoder Qwen3, Qwen3-MoE, Mixtral and gpt-oss share: GQA attention with NeoX RoPE,
// then either a SwiGLU MLP or a top-k softmax-routed mixture of SwiGLU experts per layer. What
// differs between the families (q/k norms, checkpoint names, routing normalisation, sliding
// windows, biases, sinks, the experts' layout and activation) comes in a DecoderFamily
// (qwen3_moe.cc, mixtral.cc, gpt_oss.cc). The layers carry the parallelism
// (layers/parallel_state.h); one rank is the degenerate case.
#include "loom/layers/attention.h"
#include "loom/layers/mlp.h"
#include "loom/layers/moe.h"
#include "loom/layers/ops.h"
#include "loom/layers/rope.h"
#include "loom/model/decoder_trunk.h"
#include "loom/model/moe_decoder.h"
#include "loom/parallel/moe_token_plan.h"

namespace loom::model {
namespace ops = layers::ops;

namespace {

using DecoderLayer = model::DecoderLayer<layers::ParallelAttention>;

// config.json's `layer_types` (gpt-oss) picks the layers with a sliding window; without it the
// window, if any, applies to every layer.
bool sliding_layer(const io::ModelConfig& c, int64_t layer) {
  return c.layer_types.empty() || c.layer_types[layer] == "sliding_attention";
}

layers::AttentionShape attention_shape(const io::ModelConfig& c, const DecoderFamily& f, int64_t layer) {
  layers::AttentionShape s{c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim,
                           static_cast<float>(c.rms_norm_eps), f.qk_norm};
  if (f.sliding_window && sliding_layer(c, layer)) s.sliding_window = c.sliding_window.value_or(0);
  s.bias = c.attention_bias;
  s.sinks = f.attention_sinks;
  return s;
}

layers::MoeShape moe_shape(const io::ModelConfig& c, const DecoderFamily& f) {
  layers::MoeShape s{c.hidden_size, c.num_experts, c.num_experts_per_tok, c.moe_intermediate_size,
                     c.norm_topk_prob || f.renormalize, f.expert_names};
  s.fused_biased_experts = f.fused_biased_experts;
  s.mxfp4_experts = f.mxfp4_experts;
  s.swiglu_limit = f.swiglu_limit;
  s.swiglu_alpha = f.swiglu_alpha;
  return s;
}

class MoeDecoder final : public CausalLM {
 public:
  MoeDecoder(const io::ModelConfig& c, const io::WeightSource& src, const LoadOptions& o, const DecoderFamily& f)
      : config_(c), device_(o.device), dtype_(o.dtype),
        ps_(checked_parallel_state(c, o, [&] { check_config(c); })),
        trunk_(layers::ShardLoader{src, o.dtype, o.device}, c, *ps_) {
    const layers::ShardLoader w{src, o.dtype, o.device};
    const layers::ParallelState& ps = *ps_;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      norms_.emplace_back(w, p, c.hidden_size);
      DecoderLayer L;
      L.attn = layers::ParallelAttention(w, p + "self_attn.", attention_shape(c, f, l), ps);
      L.sparse = c.is_moe_layer(l);
      if (L.sparse)
        L.moe = layers::ParallelMoe(w, p + f.moe_prefix, moe_shape(c, f), ps);
      else
        L.mlp = layers::ParallelMlp(w, p + "mlp.", c.hidden_size, c.intermediate_size, ps);
      layers_.push_back(std::move(L));
      if (o.progress) o.progress("loading weights", l + 1, c.num_hidden_layers);
    }
    rope_ = layers::make_rope(c.rope, c.head_dim, c.max_position_embeddings, o.device);
  }

  const io::ModelConfig& config() const override { return config_; }

  KvLayout kv_layout() const override {  // this rank's K/V heads
    return {config_.num_hidden_layers, layers_.empty() ? 0 : layers_[0].attn.local_kv_heads(), config_.head_dim,
            config_.head_dim, dtype_};
  }

  Device device() const override { return device_; }

  Tensor forward_hidden(const Tensor& ids, const layers::ForwardContext& ctx) override {
    return trunk_.hidden(ids, norms_, layers_, rope_, ctx, [&](const DecoderLayer& L, const Tensor& x) {
      return L.sparse ? L.moe.forward(x, ctx) : L.mlp.forward(x, ctx);
    });
  }
  Tensor logits(const Tensor& hidden, const layers::ForwardContext& ctx) override { return trunk_.logits(hidden, ctx); }

 protected:
  const layers::ParallelState* parallel_state() const override { return ps_.get(); }

 private:
  static void check_config(const io::ModelConfig& c) {
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
  std::shared_ptr<const layers::ParallelState> ps_;
  DecoderTrunk trunk_;
  std::vector<LayerNorms> norms_;
  std::vector<DecoderLayer> layers_;
  ops::Rope rope_;
};

}  // namespace

std::unique_ptr<CausalLM> load_moe_decoder(const io::ModelConfig& c, const io::WeightSource& w, const LoadOptions& o,
                                           const DecoderFamily& f) {
  return std::make_unique<MoeDecoder>(c, w, o, f);
}

void check_moe_decoder_parallel(const io::ModelConfig& c, const parallel::ParallelConfig& p) {
  try {
    LOOM_CHECK_ARG(p.pp == 1, "--pp-size ", p.pp, ": pipeline parallelism is not supported yet");
    LOOM_CHECK_ARG(p.attn_cp == 1 || p.attn_dp == 1, "--attn-cp-size ", p.attn_cp, " with --dp-size ", p.attn_dp,
                   ": context parallelism inside attention-DP replicas is not supported");
    layers::split_heads(attention_shape(c, DecoderFamily{}, 0), p.attn_tp(), 0);
    if (c.num_experts > 0) layers::split_experts(c.num_experts, p.ep, 0);
    for (int r = 0; r < p.tp; ++r)
      for (bool cp : {false, true}) parallel::moe_token_plan(p, r, cp);
  } catch (const InvalidArgument& e) {  // one line: the configuration, then what it cannot do
    throw InvalidArgument(str(p.str(), ": ", e.what()));
  }
}

}  // namespace loom::model
