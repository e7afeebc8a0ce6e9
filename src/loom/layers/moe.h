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
#include <functional>
#include <string>

#include "loom/layers/forward_context.h"
#include "loom/layers/ops.h"
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
  // gpt-oss: the experts stacked in "experts.gate_up_proj" [E, H, 2I] (gate and up interleaved
  // along the last dim) and "experts.down_proj" [E, I, H], both with "_bias"; the router has a
  // bias; the activation is the clamped SwiGLU (ops::ExpertOptions).
  bool fused_biased_experts = false;
  bool mxfp4_experts = false;  // those experts as "…_blocks" / "…_scales" (io/mxfp4.h), biases bf16
  float swiglu_limit = 0.0f, swiglu_alpha = 1.0f;
  // DeepSeek: top-k inside the best `topk_group` of `groups` expert groups, weights times
  // `routed_scale` (ops::route_grouped_topk_softmax). groups 0: route_topk_softmax.
  int64_t groups = 0, topk_group = 0;
  float routed_scale = 1.0f;
};

// For tests: every router's logits [T, E] pass through the observer set on the thread that
// computes them (an empty function: none). tests/cuda/model_test.cc tells a bf16 routing flip
// (a near-tied top-k on the fp32 CPU run) from an error with it.
using RouterObserver = std::function<void(const Tensor& logits)>;
void set_router_observer(RouterObserver observer);

// This rank's experts; throws InvalidArgument when ep does not divide the model's experts.
Range split_experts(int64_t experts, int ep, int rank);

class ParallelMoe {
 public:
  ParallelMoe() = default;
  // `prefix`: "model.layers.N.mlp." (Mixtral: "model.layers.N.block_sparse_moe.")
  ParallelMoe(const ShardLoader& w, const std::string& prefix, const MoeShape& shape, const ParallelState& ps);
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;

 private:
  // x routed through this rank's experts (partial sums). Rows from *valid_tokens on (a piecewise
  // graph's padding, ForwardContext::valid_tokens) take no expert.
  Tensor experts(const Tensor& x, const Tensor* valid_tokens = nullptr) const;
  bool all_to_all_applies(const ForwardContext& ctx) const;
  // Undefined when `automatic` finds the all-gather path moves fewer bytes.
  Tensor all_to_all(const Tensor& x, const ForwardContext& ctx) const;

  void load_fused_experts(const ShardLoader& w, const std::string& prefix, Range inter);
  Tensor route(const Tensor& x) const;  // x [T, H] -> routing logits [T, E]
  ops::Routing select(const Tensor& x) const;  // x [T, H] -> each token's top-k experts and weights
  ops::ExpertOptions expert_options() const;

  Tensor router_, router_bias_;  // [E, H], [E] (gpt-oss)
  Tensor gate_up_, down_;        // [E_local, 2·I_local, H], [E_local, H, I_local]
  Tensor gate_up_bias_, down_bias_;  // [E_local, 2·I_local], [E_local, H] (gpt-oss; down's on MOE_TP rank 0 only)
  Range experts_;
  MoeShape shape_;
  const ParallelState* ps_ = nullptr;
};

}  // namespace loom::layers
