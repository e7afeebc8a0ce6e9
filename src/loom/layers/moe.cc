#include "loom/layers/moe.h"

#include <algorithm>

#include "loom/io/mxfp4.h"
#include "loom/layers/moe_tokens.h"
#include "loom/layers/ops.h"
#include "loom/parallel/graph_registry.h"

namespace loom::layers {

namespace {
thread_local RouterObserver g_router_observer;
}  // namespace

void set_router_observer(RouterObserver observer) { g_router_observer = std::move(observer); }

Range split_experts(int64_t experts, int ep, int rank) {
  LOOM_CHECK_ARG(experts % ep == 0, "--ep-size ", ep, " does not divide the model's ", experts, " experts");
  return split_range(experts, ep, rank);
}

ParallelMoe::ParallelMoe(const ShardLoader& w, const std::string& p, const MoeShape& s, const ParallelState& ps)
    : experts_(split_experts(s.experts, ps.config.ep, ps.moe_ep_rank)), shape_(s), ps_(&ps) {
  const int64_t h = s.hidden, inter = s.intermediate;
  const Range r = split_range(inter, ps.config.moe_tp(), ps.moe_tp_rank);
  router_ = w.full(p + s.names.router + ".weight", {s.experts, h});
  if (s.fused_biased_experts) {
    router_bias_ = w.full(p + s.names.router + ".bias", {s.experts});
    load_fused_experts(w, p, r);
    return;
  }
  gate_up_ = Tensor::empty({experts_.length, 2 * r.length, h}, w.dtype, w.device);
  down_ = Tensor::empty({experts_.length, h, r.length}, w.dtype, w.device);
  for (int64_t e = 0; e < experts_.length; ++e) {
    const std::string q = p + "experts." + std::to_string(experts_.begin + e) + ".";
    w.rows_into(gate_up_[e], {q + s.names.gate + ".weight", q + s.names.up + ".weight"}, {inter, h}, r);
    down_[e].copy_from(w.source.load(q + s.names.down + ".weight", {h, inter}, w.dtype, io::Slice{1, r.begin, r.length},
                                     w.device));
  }
}

// gpt-oss's stacked experts, rearranged on the host into the [gate rows | up rows] layout the
// expert kernels take: gate_up [E, H, 2I] (gate = even columns, up = odd) becomes this rank's
// [E_local, 2·I_local, H], down [E, I, H] becomes [E_local, H, I_local]. The MXFP4 form stores
// the transposes ([E, 2I, H] and [E, H, I], io/mxfp4.h), whose rows dequantize straight into place.
void ParallelMoe::load_fused_experts(const ShardLoader& w, const std::string& p, Range r) {
  const int64_t h = shape_.hidden, inter = shape_.intermediate, el = experts_.length, E = shape_.experts;
  const io::Slice mine{0, experts_.begin, el};
  Tensor gate_up = Tensor::empty({el, 2 * r.length, h}, DType::f32);
  Tensor down = Tensor::empty({el, h, r.length}, DType::f32);
  float *dst = gate_up.data<float>(), *ddst = down.data<float>();
  // Destination row of gate (half 0, the even source rows) or up (half 1) row j of expert e.
  const auto row_of = [&](int64_t e, int64_t half, int64_t j) { return dst + ((e * 2 + half) * r.length + j) * h; };
  if (shape_.mxfp4_experts) {
    LOOM_CHECK(h % io::kMxfp4Block == 0 && inter % io::kMxfp4Block == 0, "MXFP4 experts need hidden ", h,
               " and intermediate ", inter, " sizes divisible by ", io::kMxfp4Block);
    const int64_t hg = h / io::kMxfp4Block, ig = inter / io::kMxfp4Block, half_block = io::kMxfp4Block / 2;
    const auto u8 = [&](const std::string& name, const Shape& shape) {
      return w.source.load(p + "experts." + name, shape, DType::u8, mine);
    };
    const Tensor gb = u8("gate_up_proj_blocks", {E, 2 * inter, hg, half_block}), gs = u8("gate_up_proj_scales", {E, 2 * inter, hg});
    const Tensor db = u8("down_proj_blocks", {E, h, ig, half_block}), ds = u8("down_proj_scales", {E, h, ig});
    for (int64_t e = 0; e < el; ++e)
      for (int64_t half = 0; half < 2; ++half)
        for (int64_t j = 0; j < r.length; ++j) {
          const int64_t src = e * 2 * inter + 2 * (r.begin + j) + half;
          io::dequantize_mxfp4_row(gb.data<uint8_t>() + src * hg * half_block, gs.data<uint8_t>() + src * hg, h,
                                   row_of(e, half, j));
        }
    std::vector<float> row(inter);
    for (int64_t e = 0; e < el; ++e)
      for (int64_t c = 0; c < h; ++c) {
        const int64_t src = e * h + c;
        io::dequantize_mxfp4_row(db.data<uint8_t>() + src * ig * half_block, ds.data<uint8_t>() + src * ig, inter,
                                 row.data());
        std::copy_n(row.begin() + r.begin, r.length, ddst + src * r.length);
      }
  } else {
    const Tensor gu = w.source.load(p + "experts.gate_up_proj", {E, h, 2 * inter}, DType::f32, mine);
    const Tensor dn = w.source.load(p + "experts.down_proj", {E, inter, h}, DType::f32, mine);
    const float *src = gu.data<float>(), *dsrc = dn.data<float>();
    for (int64_t e = 0; e < el; ++e)
      for (int64_t half = 0; half < 2; ++half)
        for (int64_t j = 0; j < r.length; ++j) {
          const int64_t col = 2 * (r.begin + j) + half;
          float* out = row_of(e, half, j);
          for (int64_t c = 0; c < h; ++c) out[c] = src[(e * h + c) * 2 * inter + col];
        }
    for (int64_t e = 0; e < el; ++e)
      for (int64_t c = 0; c < h; ++c)
        for (int64_t j = 0; j < r.length; ++j) ddst[(e * h + c) * r.length + j] = dsrc[(e * inter + r.begin + j) * h + c];
  }
  // The biases are bf16 in both forms; gate_up's interleaves gate and up like the weight.
  const Tensor gub = w.source.load(p + "experts.gate_up_proj_bias", {E, 2 * inter}, DType::f32, mine);
  Tensor gate_up_bias = Tensor::empty({el, 2 * r.length}, DType::f32);
  for (int64_t e = 0; e < el; ++e)
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t j = 0; j < r.length; ++j)
        gate_up_bias.data<float>()[(e * 2 + half) * r.length + j] =
            gub.data<float>()[e * 2 * inter + 2 * (r.begin + j) + half];
  const auto place = [&](const Tensor& t) { return t.to(w.dtype).to(w.device); };
  gate_up_ = place(gate_up);
  gate_up_bias_ = place(gate_up_bias);
  down_ = place(down);
  // The MOE_TP ranks' partial outputs are summed: one of them adds the bias.
  if (ps_->moe_tp_rank == 0)
    down_bias_ = place(w.source.load(p + "experts.down_proj_bias", {E, h}, DType::f32, mine));
}

Tensor ParallelMoe::route(const Tensor& x) const {
  // The router softmax runs in f32 on any dtype. gpt-oss's softmax over the top-k logits equals
  // the softmax over all of them renormalised over the top k (norm_topk_prob).
  Tensor logits = ops::linear(x, router_, router_bias_.defined() ? &router_bias_ : nullptr);
  if (g_router_observer) g_router_observer(logits);
  return logits;
}

ops::Routing ParallelMoe::select(const Tensor& x) const {
  if (shape_.groups == 0 && !router_bias_.defined()) {  // the router and its top-k: one launch at decode
    Tensor logits;
    ops::Routing r = ops::linear_route_topk_softmax(x, router_, shape_.top_k, shape_.norm_topk_prob,
                                                    g_router_observer ? &logits : nullptr);
    if (g_router_observer) g_router_observer(logits);
    return r;
  }
  if (shape_.groups == 0) return ops::route_topk_softmax(route(x), shape_.top_k, shape_.norm_topk_prob);
  return ops::route_grouped_topk_softmax(
      route(x), {shape_.top_k, shape_.groups, shape_.topk_group, shape_.norm_topk_prob, shape_.routed_scale});
}

ops::ExpertOptions ParallelMoe::expert_options() const {
  ops::ExpertOptions o;
  if (gate_up_bias_.defined()) o.gate_up_bias = &gate_up_bias_;
  if (down_bias_.defined()) o.down_bias = &down_bias_;
  o.swiglu_limit = shape_.swiglu_limit;
  o.swiglu_alpha = shape_.swiglu_alpha;
  return o;
}

Tensor ParallelMoe::experts(const Tensor& x, const Tensor* valid_tokens) const {
  ops::Routing r = select(x);
  if (valid_tokens) ops::drop_routes_past(r, *valid_tokens);
  return ops::moe_experts(x, r, gate_up_, down_, experts_.begin, expert_options());
}

Tensor ParallelMoe::forward(const Tensor& x, const ForwardContext& ctx) const {
  if (all_to_all_applies(ctx)) {
    Tensor y = all_to_all(x, ctx);
    if (y.defined()) return y;
  }
  const MoeTokens tokens(*ps_, ctx, x.size(0));
  if (!ctx.valid_tokens.defined()) return tokens.leave(experts(tokens.enter(x)));
  // A piecewise graph's padding tokens take no expert (one rank only: its rows are the step's).
  LOOM_CHECK(ps_->single(), "MoE: a padded step on a parallel rank");
  return experts(x, &ctx.valid_tokens);
}

bool ParallelMoe::all_to_all_applies(const ForwardContext& ctx) const {
  const auto& ex = ps_->exchange(ctx.cp_split);
  // Never inside a CUDA-graph capture: its row counts come from the routing, on the host.
  return ps_->dispatch != MoeDispatch::gather && ex.mode == parallel::TokenExchange::gather &&
         ps_->config.moe_tp() == 1 && ex.group.size() == ps_->moe_block.size() &&
         !parallel::GraphCaptureGuard::active();
}

// The exchange group is then the MOE_EP group: member p owns experts split_experts(E, ep, p).
Tensor ParallelMoe::all_to_all(const Tensor& x, const ForwardContext& ctx) const {
  const Group& g = ps_->exchange(ctx.cp_split).group;
  const int peers = g.size(), me = g.rank();
  const int64_t n = x.size(0), k = shape_.top_k, h = shape_.hidden, E = shape_.experts;
  const ops::Routing r = select(x);
  // Rows to send, grouped by destination: token t once per EP rank owning one of its experts.
  const ops::DispatchPlan plan = ops::moe_dispatch_plan(r, peers, E);
  const std::vector<int64_t>& send = plan.send;
  const std::vector<int64_t> matrix = g.all_gather_values(send);  // [sender][receiver]
  std::vector<int64_t> recv(peers);
  for (int p = 0; p < peers; ++p) recv[p] = matrix[p * peers + me];

  if (ps_->dispatch == MoeDispatch::automatic) {
    // Every rank holds the whole count matrix and every member's token count, so each computes
    // the same totals over the group (bytes on the wire, both ways) and all choose alike.
    const int64_t row = h * static_cast<int64_t>(dtype_size(x.dtype())), routing = 2 * k * 4;
    std::vector<int64_t> tokens(peers);
    int64_t total = 0;
    for (int p = 0; p < peers; ++p) total += tokens[p] = ctx.rank_tokens.at(g.comm()->ranks()[p] % ps_->config.tp);
    int64_t a2a = 0, gather = 0;
    for (int p = 0; p < peers; ++p) {
      for (int q = 0; q < peers; ++q)
        if (q != p) a2a += matrix[p * peers + q] * (row + routing) + matrix[q * peers + p] * row;
      gather += tokens[p] * row * (peers - 1) + (total - tokens[p]) * row;
    }
    if (a2a >= gather) return Tensor();
  }

  const Tensor x_in = g.all_to_all(ops::gather_rows(x, plan.rows), send, recv);
  const ops::Routing in = ops::unpack_routing(g.all_to_all(plan.meta, send, recv), k);
  const Tensor y_in = ops::moe_experts(x_in, in, gate_up_, down_, experts_.begin, expert_options());  // others add 0
  const Tensor y_back = g.all_to_all(y_in, recv, send);
  Tensor out = Tensor::zeros({n, h}, y_back.dtype(), y_back.device());
  ops::index_add_rows(out, y_back, plan.rows);
  return out;
}

}  // namespace loom::layers
