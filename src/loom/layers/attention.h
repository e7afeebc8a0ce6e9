// GQA attention with RoPE (Qwen3's per-head q/k RMSNorm when the shape asks for it; a sliding
// window, biases and gpt-oss's sinks when set), tensor parallelism over heads and context-parallel prefill.
//   TP: ATTN_TP rank r owns query heads [r·Hq/tp, +Hq/tp) and the K/V heads they read; when attn_tp
//       exceeds the K/V heads, each K/V head is replicated on the tp/Hk ranks whose queries use it.
//       q/k/v are column-parallel (head slices), o_proj row-parallel (all-reduce over ATTN_TP).
//   CP: the rank computes q/k/v of its two zigzag chunks; K/V are all-gathered over ATTN_CP and the
//       whole sequence is written to every CP rank's cache (decode then needs no CP traffic); each
//       chunk's queries attend causally to the cache.
#pragma once
#include "loom/layers/forward_context.h"
#include "loom/layers/ops.h"
#include "loom/layers/parallel_state.h"
#include "loom/layers/shard_loader.h"

namespace loom::layers {

struct AttentionShape {
  int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0;
  float rms_norm_eps = 1e-6f;
  bool qk_norm = true;         // Qwen3: RMSNorm of each q and k head before RoPE
  int64_t sliding_window = 0;  // 0: full causal attention
  bool bias = false;           // q/k/v/o projections with biases (gpt-oss)
  bool sinks = false;          // a learned per-head logit in every softmax's denominator (gpt-oss)
};

// This rank's heads: throws InvalidArgument when the model's heads cannot be split over attn_tp.
struct HeadSplit {
  Range q, kv;  // query heads and K/V heads of this rank
};
HeadSplit split_heads(const AttentionShape& s, int attn_tp, int rank);

// Context-parallel prefill: the whole sequence's k [T, Hk, Dk] and v [T, Hk, Dv], all-gathered over
// ATTN_CP, in token order, into this rank's cache (ctx.cp_whole); decode then needs no CP traffic.
void write_cp_kv(const Tensor& k, const Tensor& v, int64_t layer, const ForwardContext& ctx, const ParallelState& ps);

class ParallelAttention {
 public:
  ParallelAttention() = default;
  // `prefix`: "model.layers.N.self_attn."
  ParallelAttention(const ShardLoader& w, const std::string& prefix, const AttentionShape& shape,
                    const ParallelState& ps);
  // x [T, H] (this rank's attention tokens) -> [T, H], the sum over ATTN_TP done.
  Tensor forward(const Tensor& x, int64_t layer, const ops::Rope& rope, const ForwardContext& ctx) const;
  int64_t local_kv_heads() const { return heads_.kv.length; }

 private:
  Tensor q_proj_, k_proj_, v_proj_, o_proj_, q_norm_, k_norm_;
  Tensor q_bias_, k_bias_, v_bias_, o_bias_;  // o's on ATTN_TP rank 0 only: the all-reduce adds it once
  Tensor sinks_;                              // [local heads] f32
  AttentionShape shape_;
  HeadSplit heads_;
  const ParallelState* ps_ = nullptr;
};

}  // namespace loom::layers
