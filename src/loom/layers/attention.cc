#include "loom/layers/attention.h"

#include <cmath>

namespace loom::layers {

HeadSplit split_heads(const AttentionShape& s, int attn_tp, int rank) {
  LOOM_CHECK_ARG(s.heads % attn_tp == 0, "attention TP ", attn_tp, " does not divide the model's ", s.heads,
                 " attention heads");
  LOOM_CHECK_ARG(s.kv_heads % attn_tp == 0 || attn_tp % s.kv_heads == 0, "attention TP ", attn_tp,
                 " and the model's ", s.kv_heads, " key/value heads: one must divide the other");
  HeadSplit h;
  h.q = split_range(s.heads, attn_tp, rank);
  if (attn_tp <= s.kv_heads)
    h.kv = split_range(s.kv_heads, attn_tp, rank);
  else  // replicated: ranks [k·tp/Hk, (k+1)·tp/Hk) share K/V head k
    h.kv = {rank / (attn_tp / s.kv_heads), 1};
  return h;
}

void write_cp_kv(const Tensor& k, const Tensor& v, int64_t layer, const ForwardContext& ctx, const ParallelState& ps) {
  const auto whole = [&](const Tensor& mine) {
    const Tensor rows = ps.attn_cp.all_gather(mine.view({mine.size(0), -1}), ctx.cp_counts);
    return ops::gather_rows(rows, ctx.cp_order).view({-1, mine.size(1), mine.size(2)});
  };
  ops::write_kv(whole(k), whole(v), layer, *ctx.cp_whole);
}

ParallelAttention::ParallelAttention(const ShardLoader& w, const std::string& p, const AttentionShape& s,
                                     const ParallelState& ps)
    : shape_(s), heads_(split_heads(s, ps.attn_tp.size(), ps.attn_tp.rank())), ps_(&ps) {
  const int64_t d = s.head_dim, h = s.hidden;
  const Range q{heads_.q.begin * d, heads_.q.length * d}, kv{heads_.kv.begin * d, heads_.kv.length * d};
  q_proj_ = w.rows(p + "q_proj.weight", {s.heads * d, h}, q);
  k_proj_ = w.rows(p + "k_proj.weight", {s.kv_heads * d, h}, kv);
  v_proj_ = w.rows(p + "v_proj.weight", {s.kv_heads * d, h}, kv);
  o_proj_ = w.cols(p + "o_proj.weight", {h, s.heads * d}, q);
  if (s.bias) {
    q_bias_ = w.rows(p + "q_proj.bias", {s.heads * d}, q);
    k_bias_ = w.rows(p + "k_proj.bias", {s.kv_heads * d}, kv);
    v_bias_ = w.rows(p + "v_proj.bias", {s.kv_heads * d}, kv);
    if (ps.attn_tp.rank() == 0) o_bias_ = w.full(p + "o_proj.bias", {h});
  }
  if (s.sinks)
    sinks_ = w.source.load(p + "sinks", {s.heads}, DType::f32, io::Slice{0, heads_.q.begin, heads_.q.length}, w.device);
  if (s.qk_norm) {
    q_norm_ = w.full(p + "q_norm.weight", {d});
    k_norm_ = w.full(p + "k_norm.weight", {d});
  }
}

Tensor ParallelAttention::forward(const Tensor& x, int64_t layer, const ops::Rope& rope,
                                  const ForwardContext& ctx) const {
  const int64_t t = x.size(0), d = shape_.head_dim;
  if (t == 0) return x;  // an idle attention-DP replica (its whole ATTN_TP group is idle with it)
  const auto bias = [](const Tensor& b) { return b.defined() ? &b : nullptr; };
  std::vector<Tensor> qkv =
      ops::linears(x, {&q_proj_, &k_proj_, &v_proj_}, {bias(q_bias_), bias(k_bias_), bias(v_bias_)});
  Tensor q = qkv[0].view({t, -1, d});
  Tensor k = qkv[1].view({t, -1, d});
  Tensor v = qkv[2].view({t, -1, d});
  ops::AttentionParams params;
  // A decode step may leave the q/k norm and RoPE to the attention kernel (one launch fewer).
  const ops::PendingQkNormRope pending{shape_.qk_norm ? &q_norm_ : nullptr, shape_.qk_norm ? &k_norm_ : nullptr,
                                       shape_.rms_norm_eps, &rope};
  if (ops::attention_folds_qk_norm_rope(q, k.size(1), rope, ctx)) params.pending = &pending;
  else ops::qk_norm_rope(q, k, pending.q_norm, pending.k_norm, pending.eps, rope, ctx);
  if (ctx.cp_split) write_cp_kv(k, v, layer, ctx, *ps_);
  params.scale = 1.0f / std::sqrt(static_cast<float>(d));
  params.sliding_window = shape_.sliding_window;
  params.sinks = bias(sinks_);
  Tensor o = ops::linear(ops::attention(q, k, v, layer, params, ctx).view({t, -1}), o_proj_, bias(o_bias_));
  ps_->attn_tp.all_reduce(o);
  return o;
}

}  // namespace loom::layers
