#include "loom/layers/moe.h"

#include "loom/layers/moe_tokens.h"
#include "loom/layers/ops.h"
#include "loom/parallel/graph_registry.h"

namespace loom::layers {

Range split_experts(int64_t experts, int ep, int rank) {
  LOOM_CHECK_ARG(experts % ep == 0, "--ep-size ", ep, " does not divide the model's ", experts, " experts");
  return split_range(experts, ep, rank);
}

ParallelMoe::ParallelMoe(const ShardLoader& w, const std::string& p, const MoeShape& s, const ParallelState& ps)
    : experts_(split_experts(s.experts, ps.config.ep, ps.moe_ep_rank)), shape_(s), ps_(&ps) {
  const int64_t h = s.hidden, inter = s.intermediate;
  const Range r = split_range(inter, ps.config.moe_tp(), ps.moe_tp_rank);
  router_ = w.full(p + s.names.router + ".weight", {s.experts, h});
  gate_up_ = Tensor::empty({experts_.length, 2 * r.length, h}, w.dtype, w.device);
  down_ = Tensor::empty({experts_.length, h, r.length}, w.dtype, w.device);
  for (int64_t e = 0; e < experts_.length; ++e) {
    const std::string q = p + "experts." + std::to_string(experts_.begin + e) + ".";
    w.rows_into(gate_up_[e], {q + s.names.gate + ".weight", q + s.names.up + ".weight"}, {inter, h}, r);
    down_[e].copy_from(w.source.load(q + s.names.down + ".weight", {h, inter}, w.dtype, io::Slice{1, r.begin, r.length},
                                     w.device));
  }
}

Tensor ParallelMoe::experts(const Tensor& x) const {
  const Tensor logits = ops::linear(x, router_);  // the router softmax runs in f32 on any dtype
  const ops::Routing r = ops::route_topk_softmax(logits, shape_.top_k, shape_.norm_topk_prob);
  return ops::moe_experts(x, r, gate_up_, down_, experts_.begin);
}

Tensor ParallelMoe::forward(const Tensor& x, const ForwardContext& ctx) const {
  if (all_to_all_applies(ctx)) {
    Tensor y = all_to_all(x, ctx);
    if (y.defined()) return y;
  }
  const MoeTokens tokens(*ps_, ctx, x.size(0));
  return tokens.leave(experts(tokens.enter(x)));
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
  const ops::Routing r = ops::route_topk_softmax(ops::linear(x, router_), k, shape_.norm_topk_prob);
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
  const Tensor y_in = ops::moe_experts(x_in, in, gate_up_, down_, experts_.begin);  // other ranks' experts add 0
  const Tensor y_back = g.all_to_all(y_in, recv, send);
  Tensor out = Tensor::zeros({n, h}, y_back.dtype(), y_back.device());
  ops::index_add_rows(out, y_back, plan.rows);
  return out;
}

}  // namespace loom::layers
