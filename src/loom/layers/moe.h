// Top-k softmax-routed mixture of SwiGLU experts, split two ways over the MoE block:
// experts over MOE_EP (rank e owns experts [e·E/ep, (e+1)·E/ep)) and each expert's intermediate
// size over MOE_TP. The router is replicated.
//
// Token movement (moe_tokens.h) is all-gather + reduce-scatter: every rank of the block sees every
// token of the block, runs its experts on the tokens routed to them, and the partial outputs are
// summed. When each rank of an EP group holds different tokens (attention DP, or CP with
// attn_tp 1, with moe_tp 1), an all-to-all dispatch/combine sends each token only to the EP ranks
// owning one of its top-k experts: at most min(k, ep−1) remote copies per token (plus k ids and
// weights) and the same volume back, against ep−1 copies for the all-gather and one share of the
// sum for the reduce-scatter. Which is smaller depends on the routing, so with dispatch
// `automatic` every step the ranks add up both byte counts (from the per-peer counts the
// all-to-all exchanges anyway) and all take the smaller; `gather` / `all_to_all` force one (tests run both).
#pragma once
#include <string>

#include "loom/layers/forward_context.h"
#include "loom/layers/parallel_state.h"
#include "loom/layers/shard_loader.h"

namespace loom::layers {

// Checkpoint names of the router and of each expert's projections, under the layer's prefix.
struct ExpertNames {
  std::string router = "gate", gate = "gate_proj", up = "up_proj", down = "down_proj";  // Qwen3-MoE
};

struct MoeShape {
  int64_t hidden = 0, experts = 0, top_k = 0, intermediate = 0;
  bool norm_topk_prob = false;  // renormalise the top-k weights to sum 1
  ExpertNames names;
};

// This rank's experts; throws InvalidArgument when ep does not divide the model's experts.
Range split_experts(int64_t experts, int ep, int rank);

class ParallelMoe {
 public:
  ParallelMoe() = default;
  // `prefix`: "model.layers.N.mlp." (Mixtral: "model.layers.N.block_sparse_moe.")
  ParallelMoe(const ShardLoader& w, const std::string& prefix, const MoeShape& shape, const ParallelState& ps);
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;

 private:
  Tensor experts(const Tensor& x) const;  // routed through this rank's experts (partial sums)
  bool all_to_all_applies(const ForwardContext& ctx) const;
  // Undefined when `automatic` finds the all-gather path moves fewer bytes.
  Tensor all_to_all(const Tensor& x, const ForwardContext& ctx) const;

  Tensor router_;         // [E, H]
  Tensor gate_up_, down_;  // [E_local, 2·I_local, H], [E_local, H, I_local]
  Range experts_;
  MoeShape shape_;
  const ParallelState* ps_ = nullptr;
};

}  // namespace loom::layers
