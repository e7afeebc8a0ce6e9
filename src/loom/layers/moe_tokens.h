// Moves a rank's attention tokens to its MoE block's token set and the block's summed output back
// (parallel/moe_token_plan.h says which of own / split / gather applies). Shared by the MoE layer
// and the dense MLP, which is split over the same MOE_TP × MOE_EP block.
#pragma once
#include <vector>

#include "loom/layers/forward_context.h"
#include "loom/layers/parallel_state.h"

namespace loom::layers {

class MoeTokens {
 public:
  MoeTokens(const ParallelState& ps, const ForwardContext& ctx, int64_t own_tokens);
  // x [own, H] -> the block's tokens [M, H].
  Tensor enter(const Tensor& x) const;
  // Partial outputs [M, H] of this rank -> the block's sum for this rank's own tokens [own, H].
  Tensor leave(Tensor partial) const;
  // Rows of each member of the exchange group, and the total the block runs.
  const std::vector<int64_t>& counts() const { return counts_; }
  const ParallelState::Exchange& exchange() const { return ex_; }

 private:
  const ParallelState& ps_;
  const ParallelState::Exchange& ex_;
  std::vector<int64_t> counts_;
  int64_t offset_ = 0;  // first row of this rank's share in the exchanged order
};

}  // namespace loom::layers
