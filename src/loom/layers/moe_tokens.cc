#include "loom/layers/moe_tokens.h"

namespace loom::layers {

using parallel::TokenExchange;

MoeTokens::MoeTokens(const ParallelState& ps, const ForwardContext& ctx, int64_t own_tokens)
    : ps_(ps), ex_(ps.exchange(ctx.cp_split)) {
  const Group& g = ex_.group;
  if (ex_.mode == TokenExchange::split) {
    counts_ = split_counts(own_tokens, g.size());
  } else if (ex_.mode == TokenExchange::gather) {
    for (int m : g.comm()->ranks()) counts_.push_back(ctx.rank_tokens.at(m % ps.config.tp));
  } else {
    counts_ = {own_tokens};
  }
  for (int m = 0; m < g.rank(); ++m) offset_ += counts_[m];
}

Tensor MoeTokens::enter(const Tensor& x) const {
  switch (ex_.mode) {
    case TokenExchange::own: return x;
    case TokenExchange::split: return x.narrow(0, offset_, counts_[ex_.group.rank()]);
    case TokenExchange::gather: return ex_.group.all_gather(x, counts_);
  }
  return x;
}

Tensor MoeTokens::leave(Tensor partial) const {
  const Group& g = ex_.group;
  switch (ex_.mode) {
    case TokenExchange::own:
      ps_.moe_block.all_reduce(partial);
      return partial;
    case TokenExchange::split:
      ps_.moe_block.all_reduce(partial);
      return g.all_gather(partial, counts_);
    case TokenExchange::gather:
      // Each member of the block its own tokens: one reduce-scatter. Otherwise members of one
      // attention class want the same rows: sum over the block, keep ours.
      if (g.size() == ps_.moe_block.size()) return g.reduce_scatter(partial, counts_);
      ps_.moe_block.all_reduce(partial);
      return partial.narrow(0, offset_, counts_[g.rank()]).contiguous();
  }
  return partial;
}

}  // namespace loom::layers
