#include "loom/layers/mla_attention.h"

namespace loom::layers {
namespace {

// transformers builds q_a_layernorm and kv_a_layernorm with RMSNorm's default eps, not rms_norm_eps.
constexpr float kLatentEps = 1e-6f;

// Row order that turns each head's [nope | rope] rows, whose RoPE rotates pairs (2i, 2i+1)
// (transformers' complex form), into [rope | nope] with pairs (i, i + rope/2), loom's NeoX RoPE
// over the first rope dims. q and k are permuted alike, so q_pe·k_pe is unchanged.
Tensor rope_first(const Tensor& w, int64_t heads, int64_t nope, int64_t rope) {
  std::vector<int32_t> order;
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t head = h * (nope + rope);
    for (int64_t odd : {0, 1})
      for (int64_t i = 0; i < rope / 2; ++i) order.push_back(static_cast<int32_t>(head + nope + 2 * i + odd));
    for (int64_t i = 0; i < nope; ++i) order.push_back(static_cast<int32_t>(head + i));
  }
  return ops::gather_rows(w, Tensor::from_ints(order, {static_cast<int64_t>(order.size())}));
}

}  // namespace

MlaAttention::MlaAttention(const ShardLoader& w, const std::string& p, const MlaShape& s, const ParallelState& ps)
    : shape_(s), ps_(&ps) {
  // The latent is the one K/V head of an MQA split: every ATTN_TP rank keeps it.
  heads_ = split_heads(AttentionShape{s.hidden, s.heads, 1, s.rope_dim + s.nope_dim}, ps.attn_tp.size(),
                       ps.attn_tp.rank()).q;
  const int64_t h = s.hidden, c = s.kv_lora_rank, qk = s.nope_dim + s.rope_dim, hl = heads_.length;
  // Rearranged on the host in f32, then converted and placed.
  const ShardLoader host{w.source, DType::f32, Device::cpu()};
  const auto place = [&](const Tensor& t) { return t.to(w.dtype).to(w.device); };
  const Range q_rows{heads_.begin * qk, hl * qk};
  if (s.q_lora_rank > 0) {
    q_a_proj_ = w.full(p + "q_a_proj.weight", {s.q_lora_rank, h});
    q_a_norm_ = w.full(p + "q_a_layernorm.weight", {s.q_lora_rank});
    q_b_proj_ = place(rope_first(host.rows(p + "q_b_proj.weight", {s.heads * qk, s.q_lora_rank}, q_rows), hl,
                                 s.nope_dim, s.rope_dim));
  } else {
    q_proj_ = place(rope_first(host.rows(p + "q_proj.weight", {s.heads * qk, h}, q_rows), hl, s.nope_dim, s.rope_dim));
  }
  kv_a_proj_ = place(rope_first(host.full(p + "kv_a_proj_with_mqa.weight", {c + s.rope_dim, h}), 1, c, s.rope_dim));
  kv_a_norm_ = w.full(p + "kv_a_layernorm.weight", {c});

  // kv_b_proj's rows of this rank's heads, [k_nope_h (nope rows) | v_h (v rows)] per head.
  const int64_t per_head = s.nope_dim + s.v_dim;
  const Tensor kv_b = host.rows(p + "kv_b_proj.weight", {s.heads * per_head, c}, {heads_.begin * per_head, hl * per_head});
  Tensor uk_t = Tensor::empty({hl, c, s.nope_dim}, DType::f32), uv = Tensor::empty({hl, s.v_dim, c}, DType::f32);
  const float* src = kv_b.data<float>();
  float* dst = uk_t.data<float>();
  for (int64_t k = 0; k < hl; ++k) {
    for (int64_t i = 0; i < s.nope_dim; ++i)
      for (int64_t j = 0; j < c; ++j) dst[(k * c + j) * s.nope_dim + i] = src[(k * per_head + i) * c + j];
    uv[k].copy_from(kv_b.narrow(0, k * per_head + s.nope_dim, s.v_dim));
  }
  w_uk_t_ = place(uk_t);
  w_uv_ = place(uv);
  o_proj_ = w.cols(p + "o_proj.weight", {h, s.heads * s.v_dim}, {heads_.begin * s.v_dim, hl * s.v_dim});
}

Tensor MlaAttention::query(const Tensor& x) const {
  if (!q_b_proj_.defined()) return ops::linear(x, q_proj_);
  return ops::linear(ops::rms_norm(ops::linear(x, q_a_proj_), q_a_norm_, kLatentEps), q_b_proj_);
}

Tensor MlaAttention::forward(const Tensor& x, int64_t layer, const ops::Rope& rope, const ForwardContext& ctx) const {
  const int64_t t = x.size(0), hl = heads_.length, r = shape_.rope_dim, c = shape_.kv_lora_rank;
  if (t == 0) return x;  // an idle attention-DP replica (its whole ATTN_TP group is idle with it)
  const Tensor q = query(x).view({t, hl, r + shape_.nope_dim});  // each head [q_pe | q_nope]
  const Tensor kv = ops::linear(x, kv_a_proj_);                   // [k_pe | c]
  Tensor latent = Tensor::empty({t, c}, kv.dtype(), kv.device());
  ops::copy_(latent, kv.narrow(1, r, c));
  latent = ops::rms_norm(latent, kv_a_norm_, kLatentEps);
  Tensor key = Tensor::empty({t, 1, r + c}, kv.dtype(), kv.device());  // [k_pe | normed c]
  Tensor key_pe = key.view({t, r + c}).narrow(1, 0, r), key_c = key.view({t, r + c}).narrow(1, r, c);
  ops::copy_(key_pe, kv.narrow(1, 0, r));
  ops::copy_(key_c, latent);
  Tensor query = Tensor::empty({t, hl, r + c}, q.dtype(), q.device());  // [q_pe | W_UKᵀ q_nope]
  Tensor query_pe = query.narrow(2, 0, r), query_c = query.narrow(2, r, c);
  ops::copy_(query_pe, q.narrow(2, 0, r));
  ops::copy_(query_c, ops::per_head_linear(q.narrow(2, r, shape_.nope_dim), w_uk_t_));
  ops::qk_norm_rope(query, key, nullptr, nullptr, 0.0f, rope, ctx);  // rope.rotary_dim = r: q_pe and k_pe
  const Tensor value = latent.view({t, 1, c});
  if (ctx.cp_split) write_cp_kv(key, value, layer, ctx, *ps_);
  ops::AttentionParams params;
  params.scale = shape_.softmax_scale;
  params.value_in_key = true;
  const Tensor o_latent = ops::attention(query, key, value, layer, params, ctx);  // [t, hl, c]
  Tensor o = ops::linear(ops::per_head_linear(o_latent, w_uv_).view({t, -1}), o_proj_);
  ps_->attn_tp.all_reduce(o);
  return o;
}

}  // namespace loom::layers
