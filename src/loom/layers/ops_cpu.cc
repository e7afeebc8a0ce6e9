// The CPU branch of layers/ops.h (fp32, over kernels/cpu) and the dispatch to the CUDA branch.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "loom/kernels/cpu/ops.h"
#include "loom/layers/group.h"
#include "loom/layers/ops.h"
#include "loom/layers/ops_cuda.h"

namespace loom::layers::ops {
namespace k = loom::kernels::cpu;

namespace {

Tensor host_f32(const Tensor& t, const char* what) {
  LOOM_CHECK(t.dtype() == DType::f32, what, ": CPU ops take f32 tensors, got ", t.str());
  return t.contiguous();
}

k::PagedKv paged_kv(const ForwardContext& ctx, int64_t layer) {
  const Tensor& kc = ctx.kv->k[layer];
  const Tensor& vc = ctx.kv->v[layer];
  return k::PagedKv{kc.data<float>(), vc.data<float>(), ctx.page_size, kc.size(1), kc.size(2), vc.size(2)};
}

}  // namespace

Tensor embedding(const Tensor& table, const Tensor& ids) {
  if (table.device().is_cuda()) return cuda::embedding(table, ids);
  Tensor t = host_f32(table, "embedding");
  const int64_t n = ids.numel(), vocab = t.size(0), dim = t.size(1);
  const int32_t* id = ids.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    LOOM_CHECK_ARG(id[i] >= 0 && id[i] < vocab, "token id ", id[i], " is outside the vocabulary [0, ", vocab, ")");
  Tensor out = Tensor::empty({n, dim}, DType::f32);
  k::embedding(t.data<float>(), id, out.data<float>(), n, dim);
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  if (x.device().is_cuda()) return cuda::linear(x, w, bias);
  Tensor xc = host_f32(x, "linear");
  const int64_t in = w.size(1), out_f = w.size(0), m = xc.numel() / in;
  LOOM_CHECK(xc.size(-1) == in, "linear: input ", x.str(), " against weight ", w.str());
  Shape shape = xc.shape();
  shape.back() = out_f;
  Tensor y = Tensor::empty(shape, DType::f32);
  k::linear(xc.data<float>(), w.data<float>(), bias ? bias->data<float>() : nullptr, y.data<float>(), m,
            out_f, in);
  return y;
}

std::vector<Tensor> linears(const Tensor& x, const std::vector<const Tensor*>& weights,
                            const std::vector<const Tensor*>& biases) {
  LOOM_CHECK(biases.empty() || biases.size() == weights.size(), "linears: ", biases.size(), " biases for ",
             weights.size(), " weights");
  if (x.device().is_cuda()) return cuda::linears(x, weights, biases);
  std::vector<Tensor> out;
  for (size_t j = 0; j < weights.size(); ++j) out.push_back(linear(x, *weights[j], biases.empty() ? nullptr : biases[j]));
  return out;
}

Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) {
  if (x.device().is_cuda()) return cuda::rms_norm(x, w, eps);
  Tensor xc = host_f32(x, "rms_norm");
  Tensor y = Tensor::empty(xc.shape(), DType::f32);
  const int64_t dim = xc.size(-1);
  k::rms_norm(xc.data<float>(), w.data<float>(), y.data<float>(), xc.numel() / dim, dim, eps);
  return y;
}

void add_(Tensor& residual, const Tensor& x) {
  if (residual.device().is_cuda()) return cuda::add_(residual, x);
  LOOM_CHECK(residual.is_contiguous() && residual.shape() == x.shape(), "add_: ", residual.str(), " += ", x.str());
  Tensor xc = host_f32(x, "add_");
  float* r = residual.data<float>();
  const float* a = xc.data<float>();
  for (int64_t i = 0; i < residual.numel(); ++i) r[i] += a[i];
}

Tensor add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps) {
  if (residual.device().is_cuda()) return cuda::add_rms_norm(residual, x, w, eps);
  add_(residual, x);
  return rms_norm(residual, w, eps);
}

void qk_norm_rope(Tensor& q, Tensor& kt, const Tensor* q_norm, const Tensor* k_norm, float eps,
                  const Rope& rope, const ForwardContext& ctx) {
  if (q.device().is_cuda()) return cuda::qk_norm_rope(q, kt, q_norm, k_norm, eps, rope, ctx);
  LOOM_CHECK(q.is_contiguous() && kt.is_contiguous(), "qk_norm_rope needs contiguous q and k");
  const int64_t tokens = q.size(0), dim = q.size(2);
  for (auto [t, norm] : {std::pair{&q, q_norm}, std::pair{&kt, k_norm}}) {
    const int64_t heads = t->size(1);
    float* p = t->data<float>();
    if (norm) k::rms_norm(p, norm->data<float>(), p, tokens * heads, dim, eps);
    k::rope_neox(p, ctx.h_positions.data(), tokens, heads, dim, rope.rotary_dim,
                 rope.inv_freq.data<float>(), rope.scaling);
  }
}

bool attention_folds_qk_norm_rope(const Tensor& q, int64_t kv_heads, const Rope& rope, const ForwardContext& ctx) {
  return q.device().is_cuda() && cuda::attention_folds_qk_norm_rope(q, kv_heads, rope, ctx);
}

Tensor attention(const Tensor& q, const Tensor& kt, const Tensor& v, int64_t layer,
                 const AttentionParams& params, const ForwardContext& ctx) {
  if (q.device().is_cuda()) return cuda::attention(q, kt, v, layer, params, ctx);
  LOOM_CHECK(params.pending == nullptr, "attention: the q/k norm and RoPE are not folded on the CPU");
  const k::PagedKv kv = paged_kv(ctx, layer);
  const int64_t q_heads = q.size(1);
  LOOM_CHECK(q_heads % kv.kv_heads == 0, "attention: ", q_heads, " query heads over ", kv.kv_heads, " kv heads");
  Tensor qc = host_f32(q, "attention"), kc = host_f32(kt, "attention"), vc = host_f32(v, "attention");
  Tensor out = Tensor::empty({q.size(0), q_heads, kv.v_dim}, DType::f32);
  const float* sinks = params.sinks ? params.sinks->data<float>() : nullptr;
  for (int64_t s = 0; s < ctx.num_seqs; ++s) {
    const int64_t t0 = ctx.h_token_starts[s], n = ctx.h_token_starts[s + 1] - t0;
    const int32_t* pages = ctx.h_page_table.data() + s * ctx.max_pages;
    const int64_t start = ctx.h_start_pos[s];
    k::write_kv(kv, pages, start, n, kc.data<float>() + t0 * kv.kv_heads * kv.k_dim,
                vc.data<float>() + t0 * kv.kv_heads * kv.v_dim);
    k::paged_attention(qc.data<float>() + t0 * q_heads * kv.k_dim, n, q_heads, kv, pages, start,
                       params.scale, params.sliding_window, sinks, out.data<float>() + t0 * q_heads * kv.v_dim);
  }
  return out;
}

Tensor silu_and_mul(const Tensor& gate_up) {
  if (gate_up.device().is_cuda()) return cuda::silu_and_mul(gate_up);
  Tensor g = host_f32(gate_up, "silu_and_mul");
  const int64_t inter = g.size(-1) / 2, m = g.numel() / g.size(-1);
  Tensor out = Tensor::empty({m, inter}, DType::f32);
  k::silu_and_mul(g.data<float>(), out.data<float>(), m, inter);
  return out;
}

Routing linear_route_topk_softmax(const Tensor& x, const Tensor& w, int64_t k, bool renormalize, Tensor* logits) {
  if (x.device().is_cuda()) return cuda::linear_route_topk_softmax(x, w, k, renormalize, logits);
  Tensor l = linear(x, w);
  if (logits) *logits = l;
  return route_topk_softmax(l, k, renormalize);
}

Routing route_topk_softmax(const Tensor& router_logits, int64_t topk, bool renormalize) {
  if (router_logits.device().is_cuda()) return cuda::route_topk_softmax(router_logits, topk, renormalize);
  Tensor probs = host_f32(router_logits, "route_topk_softmax").clone();
  const int64_t t = probs.size(0), e = probs.size(1);
  LOOM_CHECK(topk >= 1 && topk <= e, "router: top-", topk, " of ", e, " experts");
  k::softmax(probs.data<float>(), t, e);
  Routing r{Tensor::empty({t, topk}, DType::f32), Tensor::empty({t, topk}, DType::i32)};
  k::topk(probs.data<float>(), t, e, topk, r.weights.data<float>(), r.ids.data<int32_t>());
  if (renormalize) {
    float* w = r.weights.data<float>();
    for (int64_t i = 0; i < t; ++i) {
      float sum = 0;
      for (int64_t j = 0; j < topk; ++j) sum += w[i * topk + j];
      for (int64_t j = 0; j < topk; ++j) w[i * topk + j] /= sum;
    }
  }
  return r;
}

Routing route_grouped_topk_softmax(const Tensor& router_logits, const GroupedTopk& g) {
  if (router_logits.device().is_cuda()) return cuda::route_grouped_topk_softmax(router_logits, g);
  Tensor scores = host_f32(router_logits, "route_grouped_topk_softmax").clone();
  const int64_t t = scores.size(0), e = scores.size(1);
  LOOM_CHECK(g.groups >= 1 && e % g.groups == 0 && g.topk_group >= 1 && g.topk_group <= g.groups && g.k >= 1 &&
                 g.k <= e,
             "router: top-", g.k, " of ", e, " experts in the best ", g.topk_group, " of ", g.groups, " groups");
  k::softmax(scores.data<float>(), t, e);
  Routing r{Tensor::empty({t, g.k}, DType::f32), Tensor::empty({t, g.k}, DType::i32)};
  k::grouped_topk(scores.data<float>(), t, e, g.groups, g.topk_group, g.k, r.weights.data<float>(),
                  r.ids.data<int32_t>());
  for (int64_t i = 0; i < t; ++i) {
    float* w = r.weights.data<float>() + i * g.k;
    const float sum = std::accumulate(w, w + g.k, 0.0f);
    for (int64_t j = 0; j < g.k; ++j) w[j] = (g.renormalize ? w[j] / sum : w[j]) * g.scale;
  }
  return r;
}

Tensor moe_experts(const Tensor& x, const Routing& routing, const Tensor& w_gate_up,
                   const Tensor& w_down, int64_t expert_begin, const ExpertOptions& opt) {
  if (x.device().is_cuda()) return cuda::moe_experts(x, routing, w_gate_up, w_down, expert_begin, opt);
  Tensor xc = host_f32(x, "moe_experts");
  const int64_t t = xc.size(0), hidden = xc.size(1), topk = routing.ids.size(1);
  const int64_t local = w_gate_up.size(0), inter = w_down.size(2);
  const int32_t* ids = routing.ids.data<int32_t>();
  const float* wts = routing.weights.data<float>();
  Tensor out = Tensor::zeros({t, hidden}, DType::f32);
  float* o = out.data<float>();
  std::vector<int64_t> rows;
  std::vector<float> scale;
  for (int64_t e = 0; e < local; ++e) {
    rows.clear();
    scale.clear();
    for (int64_t i = 0; i < t * topk; ++i) {
      if (ids[i] != expert_begin + e) continue;
      rows.push_back(i / topk);
      scale.push_back(wts[i]);
    }
    if (rows.empty()) continue;
    const int64_t m = static_cast<int64_t>(rows.size());
    std::vector<float> xg(m * hidden), gu(m * 2 * inter), act(m * inter), y(m * hidden);
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(&xg[r * hidden], xc.data<float>() + rows[r] * hidden, hidden * sizeof(float));
    const auto bias_of = [e](const Tensor* b) { return b ? (*b)[e].data<float>() : nullptr; };
    k::linear(xg.data(), w_gate_up[e].data<float>(), bias_of(opt.gate_up_bias), gu.data(), m, 2 * inter, hidden);
    if (opt.swiglu_limit > 0) k::clamped_swiglu(gu.data(), act.data(), m, inter, opt.swiglu_alpha, opt.swiglu_limit);
    else k::silu_and_mul(gu.data(), act.data(), m, inter);
    k::linear(act.data(), w_down[e].data<float>(), bias_of(opt.down_bias), y.data(), m, hidden, inter);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t d = 0; d < hidden; ++d) o[rows[r] * hidden + d] += scale[r] * y[r * hidden + d];
  }
  return out;
}

Tensor per_head_linear(const Tensor& x, const Tensor& w) {
  if (x.device().is_cuda()) return cuda::per_head_linear(x, w);
  const int64_t heads = w.size(0);
  LOOM_CHECK(x.dim() == 3 && x.size(1) == heads && x.size(2) == w.size(2), "per_head_linear: x ", x.str(), ", w ",
             w.str());
  Tensor out = Tensor::empty({x.size(0), heads, w.size(1)}, DType::f32);
  for (int64_t h = 0; h < heads; ++h) out.narrow(1, h, 1).copy_from(linear(x.narrow(1, h, 1), w[h]));
  return out;
}

void copy_(Tensor& dst, const Tensor& src) {
  if (dst.device().is_cuda()) return cuda::copy_(dst, src);
  dst.copy_from(src);
}

Tensor gather_rows(const Tensor& x, const Tensor& rows) {
  if (x.device().is_cuda()) return cuda::gather_rows(x, rows);
  Tensor xc = host_f32(x, "gather_rows");
  const int64_t n = rows.numel(), dim = xc.size(-1);
  Tensor out = Tensor::empty({n, dim}, DType::f32);
  const int32_t* r = rows.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(out.data<float>() + i * dim, xc.data<float>() + r[i] * dim, dim * sizeof(float));
  return out;
}

void drop_routes_past(Routing& routing, const Tensor& valid_tokens) {
  if (routing.ids.device().is_cuda()) return cuda::drop_routes_past(routing, valid_tokens);
  LOOM_CHECK(valid_tokens.dtype() == DType::i32 && valid_tokens.numel() == 1 && routing.ids.is_contiguous(),
             "drop_routes_past: valid tokens ", valid_tokens.str(), ", ids ", routing.ids.str());
  const int64_t k = routing.ids.size(1), from = std::max<int64_t>(0, valid_tokens.data<int32_t>()[0]);
  int32_t* ids = routing.ids.data<int32_t>();
  for (int64_t i = from * k; i < routing.ids.numel(); ++i) ids[i] = -1;
}

Tensor embedding_slice(const Tensor& table, const Tensor& ids, int64_t vocab_begin) {
  if (table.device().is_cuda()) return cuda::embedding_slice(table, ids, vocab_begin);
  Tensor t = host_f32(table, "embedding_slice");
  const int64_t n = ids.numel(), rows = t.size(0), dim = t.size(1);
  const int32_t* id = ids.data<int32_t>();
  Tensor out = Tensor::zeros({n, dim}, DType::f32);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = id[i] - vocab_begin;
    if (r >= 0 && r < rows) std::memcpy(out.data<float>() + i * dim, t.data<float>() + r * dim, dim * sizeof(float));
  }
  return out;
}

void write_kv(const Tensor& kt, const Tensor& v, int64_t layer, const ForwardContext& ctx) {
  if (kt.device().is_cuda()) return cuda::write_kv(kt, v, layer, ctx);
  const k::PagedKv kv = paged_kv(ctx, layer);
  Tensor kc = host_f32(kt, "write_kv"), vc = host_f32(v, "write_kv");
  for (int64_t s = 0; s < ctx.num_seqs; ++s) {
    const int64_t t0 = ctx.h_token_starts[s], n = ctx.h_token_starts[s + 1] - t0;
    k::write_kv(kv, ctx.h_page_table.data() + s * ctx.max_pages, ctx.h_start_pos[s], n,
                kc.data<float>() + t0 * kv.kv_heads * kv.k_dim, vc.data<float>() + t0 * kv.kv_heads * kv.v_dim);
  }
}

void index_add_rows(Tensor& out, const Tensor& src, const Tensor& rows) {
  if (out.device().is_cuda()) return cuda::index_add_rows(out, src, rows);
  Tensor sc = host_f32(src, "index_add_rows");
  LOOM_CHECK(out.is_contiguous() && out.dtype() == DType::f32 && sc.size(0) == rows.numel() &&
                 sc.numel() == rows.numel() * out.size(-1),
             "index_add_rows: ", src.str(), " rows into ", out.str());
  const int64_t dim = out.size(-1), n = out.size(0);
  const int32_t* r = rows.data<int32_t>();
  for (int64_t i = 0; i < rows.numel(); ++i) {
    LOOM_CHECK(r[i] >= 0 && r[i] < n, "index_add_rows: row ", r[i], " outside [0, ", n, ")");
    float* o = out.data<float>() + r[i] * dim;
    const float* a = sc.data<float>() + i * dim;
    for (int64_t d = 0; d < dim; ++d) o[d] += a[d];
  }
}

DispatchPlan moe_dispatch_plan(const Routing& routing, int peers, int64_t experts) {
  if (routing.ids.device().is_cuda()) return cuda::moe_dispatch_plan(routing, peers, experts);
  const int64_t n = routing.ids.size(0), k = routing.ids.size(1);
  const int32_t* id = routing.ids.data<int32_t>();
  const float* wt = routing.weights.data<float>();
  std::vector<int32_t> rows;
  std::vector<float> meta;
  DispatchPlan plan;
  plan.send.assign(peers, 0);
  for (int p = 0; p < peers; ++p) {
    const Range owned = split_range(experts, peers, p);
    for (int64_t t = 0; t < n; ++t) {
      bool hit = false;
      for (int64_t j = 0; j < k; ++j) hit = hit || (id[t * k + j] >= owned.begin && id[t * k + j] < owned.begin + owned.length);
      if (!hit) continue;
      rows.push_back(static_cast<int32_t>(t));
      ++plan.send[p];
      for (int64_t j = 0; j < k; ++j) meta.push_back(static_cast<float>(id[t * k + j]));
      for (int64_t j = 0; j < k; ++j) meta.push_back(wt[t * k + j]);
    }
  }
  const int64_t sent = static_cast<int64_t>(rows.size());
  plan.rows = Tensor::from_ints(rows, {sent});
  plan.meta = Tensor::from_floats(meta, {sent, 2 * k});
  return plan;
}

Routing unpack_routing(const Tensor& meta, int64_t k) {
  if (meta.device().is_cuda()) return cuda::unpack_routing(meta, k);
  const int64_t n = meta.size(0);
  LOOM_CHECK(meta.dim() == 2 && meta.size(1) == 2 * k && meta.dtype() == DType::f32, "unpack_routing: ", meta.str(),
             " for top-", k);
  std::vector<int32_t> ids(n * k);
  std::vector<float> weights(n * k);
  const Tensor mc = meta.contiguous();  // alive while m is read
  const float* m = mc.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      ids[i * k + j] = static_cast<int32_t>(m[i * 2 * k + j]);
      weights[i * k + j] = m[i * 2 * k + k + j];
    }
  return {Tensor::from_floats(weights, {n, k}), Tensor::from_ints(ids, {n, k})};
}

Tensor concat_vocab_shards(const Tensor& shards, int parts, int64_t vocab) {
  if (shards.device().is_cuda()) return cuda::concat_vocab_shards(shards, parts, vocab);
  const int64_t rows = shards.size(0) / parts;
  Tensor out = Tensor::empty({rows, vocab}, shards.dtype(), shards.device());
  for (int p = 0; p < parts; ++p) {
    const Range r = split_range(vocab, parts, p);
    for (int64_t i = 0; i < rows; ++i)
      out[i].narrow(0, r.begin, r.length).copy_from(shards[p * rows + i].narrow(0, 0, r.length));
  }
  return out;
}

}  // namespace loom::layers::ops
