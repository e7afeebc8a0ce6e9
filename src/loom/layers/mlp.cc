#include "loom/layers/mlp.h"

#include "loom/layers/moe_tokens.h"
#include "loom/layers/ops.h"

namespace loom::layers {

ParallelMlp::ParallelMlp(const ShardLoader& w, const std::string& p, int64_t hidden, int64_t inter,
                         const ParallelState& ps)
    : ps_(&ps) {
  const Range r = split_range(inter, ps.moe_block.size(), ps.moe_block.rank());
  gate_up_ = Tensor::empty({2 * r.length, hidden}, w.dtype, w.device);
  w.rows_into(gate_up_, {p + "gate_proj.weight", p + "up_proj.weight"}, {inter, hidden}, r);
  down_ = w.cols(p + "down_proj.weight", {hidden, inter}, r);
}

Tensor ParallelMlp::forward(const Tensor& x, const ForwardContext& ctx) const {
  const MoeTokens tokens(*ps_, ctx, x.size(0));
  const Tensor xm = tokens.enter(x);
  return tokens.leave(ops::linear(ops::silu_and_mul(ops::linear(xm, gate_up_)), down_));
}

}  // namespace loom::layers
