// Dense SwiGLU MLP, tensor-parallel over the MoE block (MOE_TP × MOE_EP ranks): gate/up are
// column-parallel and down row-parallel over slices of the intermediate size; tokens move as the
// MoE layer's do, so dense layers inside MoE models and dense Qwen3 share one layout.
#pragma once
#include "loom/layers/forward_context.h"
#include "loom/layers/parallel_state.h"
#include "loom/layers/shard_loader.h"

namespace loom::layers {

class ParallelMlp {
 public:
  ParallelMlp() = default;
  // `prefix`: "model.layers.N.mlp."
  ParallelMlp(const ShardLoader& w, const std::string& prefix, int64_t hidden, int64_t intermediate,
              const ParallelState& ps);
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;

 private:
  Tensor gate_up_, down_;  // [2·I_local, H], [H, I_local]
  const ParallelState* ps_ = nullptr;
};

}  // namespace loom::layers
