// What every pre-norm decoder here shares around its layers: the vocab-parallel embedding, the
// residual stream through attention and feed-forward sublayers (each read through an RMSNorm, the
// residual add fused into the next norm), the final norm and the LM head. The families differ only
// in the sublayers they pass to forward() (moe_decoder.cc, deepseek_v2.cc).
#pragma once
#include <string>
#include <vector>

#include "loom/io/model_config.h"
#include "loom/layers/mlp.h"
#include "loom/layers/moe.h"
#include "loom/layers/ops.h"
#include "loom/layers/vocab_parallel.h"
#include "loom/model/causal_lm.h"

namespace loom::model {

// The rank's layout (one rank when the options give none), after `check_model` and the layout's
// fit to the model have passed: both run before any weight is read.
template <class CheckModel>
std::shared_ptr<const layers::ParallelState> checked_parallel_state(const io::ModelConfig& c, const LoadOptions& o,
                                                                    CheckModel check_model) {
  check_model();
  auto ps = o.parallel ? o.parallel : std::make_shared<const layers::ParallelState>();
  check_parallel_fit(c, ps->config);
  return ps;
}

// A decoder layer's sublayers besides its norms: the attention, then a dense MLP or a sparse MoE
// block (DeepSeek: the MLP holds the shared experts beside the routed ones).
template <class Attention>
struct DecoderLayer {
  Attention attn;
  bool sparse = false;
  layers::ParallelMlp mlp;
  layers::ParallelMoe moe;
};

// The two norms of layer N ("model.layers.N.input_layernorm", "...post_attention_layernorm").
struct LayerNorms {
  Tensor input, post_attention;
  LayerNorms() = default;
  LayerNorms(const layers::ShardLoader& w, const std::string& prefix, int64_t hidden)
      : input(w.full(prefix + "input_layernorm.weight", {hidden})),
        post_attention(w.full(prefix + "post_attention_layernorm.weight", {hidden})) {}
};

class DecoderTrunk {
 public:
  DecoderTrunk() = default;
  // Loads model.embed_tokens, model.norm and lm_head (tied to the embedding where config.json says).
  DecoderTrunk(const layers::ShardLoader& w, const io::ModelConfig& c, const layers::ParallelState& ps)
      : embed_(w, "model.embed_tokens.weight", c.vocab_size, c.hidden_size, ps),
        final_norm_(w.full("model.norm.weight", {c.hidden_size})),
        lm_head_(w, "lm_head.weight", c.vocab_size, c.hidden_size, ps, c.tie_word_embeddings ? &embed_ : nullptr),
        eps_(static_cast<float>(c.rms_norm_eps)) {}
  DecoderTrunk(const DecoderTrunk&) = delete;  // lm_head_ may point at embed_
  DecoderTrunk& operator=(DecoderTrunk&&) = delete;

  // norms[l] and stack[l] are layer l's; feed_forward(stack[l], x) is its MLP or MoE sublayer.
  // The hidden states after the final norm; logits() applies the LM head to ctx.logit_rows of them.
  template <class Attention, class FeedForward>
  Tensor hidden(const Tensor& ids, const std::vector<LayerNorms>& norms,
                 const std::vector<DecoderLayer<Attention>>& stack, const layers::ops::Rope& rope,
                 const layers::ForwardContext& ctx, FeedForward feed_forward) const {
    namespace ops = layers::ops;
    Tensor residual = embed_.forward(ids);
    Tensor x = ops::rms_norm(residual, norms[0].input, eps_);
    for (size_t l = 0; l < norms.size(); ++l) {
      if (l > 0) x = ops::add_rms_norm(residual, x, norms[l].input, eps_);
      x = stack[l].attn.forward(x, static_cast<int64_t>(l), rope, ctx);
      x = ops::add_rms_norm(residual, x, norms[l].post_attention, eps_);
      x = feed_forward(stack[l], x);
    }
    return ops::add_rms_norm(residual, x, final_norm_, eps_);
  }
  Tensor logits(const Tensor& hidden, const layers::ForwardContext& ctx) const { return lm_head_.forward(hidden, ctx); }

 private:
  layers::VocabParallelEmbedding embed_;
  Tensor final_norm_;
  layers::ParallelLMHead lm_head_;
  float eps_ = 1e-6f;
};

}  // namespace loom::model
