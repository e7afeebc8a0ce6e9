// The pre-norm decoder Qwen3, Qwen3-MoE and Mixtral share: GQA attention with NeoX RoPE, then
// either a SwiGLU MLP or a top-k softmax-routed mixture of SwiGLU experts per layer. What differs
// between the families (q/k norms, checkpoint names, routing normalisation, sliding window) comes
// in a DecoderFamily (qwen3_moe.cc, mixtral.cc). The layers carry the parallelism
// (layers/parallel_state.h); one rank is the degenerate case.
#include "loom/layers/attention.h"
#include "loom/layers/mlp.h"
#include "loom/layers/moe.h"
#include "loom/layers/ops.h"
#include "loom/layers/rope.h"
#include "loom/layers/vocab_parallel.h"
#include "loom/model/moe_decoder.h"
#include "loom/parallel/moe_token_plan.h"

namespace loom::model {
namespace ops = layers::ops;

namespace {

struct DecoderLayer {
  Tensor input_norm, post_attention_norm;
  layers::ParallelAttention attn;
  bool sparse = false;
  layers::ParallelMlp mlp;
  layers::ParallelMoe moe;
};

layers::AttentionShape attention_shape(const io::ModelConfig& c, const DecoderFamily& f) {
  return {c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, static_cast<float>(c.rms_norm_eps),
          f.qk_norm, f.sliding_window ? c.sliding_window.value_or(0) : 0};
}

class MoeDecoder final : public CausalLM {
 public:
  MoeDecoder(const io::ModelConfig& c, const io::WeightSource& src, const LoadOptions& o, const DecoderFamily& f)
      : config_(c), device_(o.device), dtype_(o.dtype),
        ps_(o.parallel ? o.parallel : std::make_shared<const layers::ParallelState>()) {
    check_config();
    check_parallel_fit(c, ps_->config);
    const layers::ShardLoader w{src, o.dtype, o.device};
    const layers::ParallelState& ps = *ps_;
    embed_ = layers::VocabParallelEmbedding(w, "model.embed_tokens.weight", c.vocab_size, c.hidden_size, ps);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      DecoderLayer L;
      L.input_norm = w.full(p + "input_layernorm.weight", {c.hidden_size});
      L.post_attention_norm = w.full(p + "post_attention_layernorm.weight", {c.hidden_size});
      L.attn = layers::ParallelAttention(w, p + "self_attn.", attention_shape(c, f), ps);
      L.sparse = c.is_moe_layer(l);
      if (L.sparse)
        L.moe = layers::ParallelMoe(w, p + f.moe_prefix, {c.hidden_size, c.num_experts, c.num_experts_per_tok,
                                                          c.moe_intermediate_size, c.norm_topk_prob || f.renormalize,
                                                          f.expert_names},
                                    ps);
      else
        L.mlp = layers::ParallelMlp(w, p + "mlp.", c.hidden_size, c.intermediate_size, ps);
      layers_.push_back(std::move(L));
      if (o.progress) o.progress("loading weights", l + 1, c.num_hidden_layers);
    }
    final_norm_ = w.full("model.norm.weight", {c.hidden_size});
    lm_head_ = layers::ParallelLMHead(w, "lm_head.weight", c.vocab_size, c.hidden_size, ps,
                                      c.tie_word_embeddings ? &embed_ : nullptr);
    rope_ = layers::make_rope(c.rope, c.head_dim, c.max_position_embeddings, o.device);
  }

  const io::ModelConfig& config() const override { return config_; }

  KvLayout kv_layout() const override {  // this rank's K/V heads
    return {config_.num_hidden_layers, layers_.empty() ? 0 : layers_[0].attn.local_kv_heads(), config_.head_dim,
            config_.head_dim, dtype_};
  }

  Device device() const override { return device_; }

  Tensor forward_device(const Tensor& ids, const layers::ForwardContext& ctx) override {
    const float eps = static_cast<float>(config_.rms_norm_eps);
    Tensor residual = embed_.forward(ids);
    Tensor x = ops::rms_norm(residual, layers_[0].input_norm, eps);
    for (size_t l = 0; l < layers_.size(); ++l) {
      const DecoderLayer& L = layers_[l];
      if (l > 0) x = ops::add_rms_norm(residual, x, L.input_norm, eps);
      x = L.attn.forward(x, static_cast<int64_t>(l), rope_, ctx);
      x = ops::add_rms_norm(residual, x, L.post_attention_norm, eps);
      x = L.sparse ? L.moe.forward(x, ctx) : L.mlp.forward(x, ctx);
    }
    x = ops::add_rms_norm(residual, x, final_norm_, eps);
    return lm_head_.forward(x, ctx);
  }

 protected:
  const layers::ParallelState* parallel_state() const override { return ps_.get(); }

 private:
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
  std::shared_ptr<const layers::ParallelState> ps_;
  layers::VocabParallelEmbedding embed_;
  Tensor final_norm_;
  layers::ParallelLMHead lm_head_;
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
    layers::split_heads(attention_shape(c, DecoderFamily{}), p.attn_tp(), 0);
    if (c.num_experts > 0) layers::split_experts(c.num_experts, p.ep, 0);
    for (int r = 0; r < p.tp; ++r)
      for (bool cp : {false, true}) parallel::moe_token_plan(p, r, cp);
  } catch (const InvalidArgument& e) {  // one line: the configuration, then what it cannot do
    throw InvalidArgument(str(p.str(), ": ", e.what()));
  }
}

}  // namespace loom::model
