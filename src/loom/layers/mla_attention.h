// DeepSeek-V2's multi-head latent attention (MLA), in the absorbed form, so that the paged cache
// holds one compressed latent per token instead of every head's keys and values.
//   Per head h: q_h = [q_nope_h | q_pe_h] from q_proj (or q_a_proj -> RMSNorm -> q_b_proj).
//   kv_a_proj_with_mqa(x) = [c | k_pe]: c the latent [kv_lora_rank] (then RMSNorm'd), k_pe one RoPE
//   key shared by all heads. kv_b_proj(c) = per head [k_nope_h | v_h] = [W_UK_h c | W_UV_h c].
// Since q_nope_h·k_nope_h = (W_UK_hᵀ q_nope_h)·c, every head attends as MQA over one K/V head:
// query [q_pe_h | W_UK_hᵀ q_nope_h], key [k_pe | c], value c; the head's output is W_UV_h o_lat_h.
//   TP: ATTN_TP rank r owns query heads [r·H/tp, +H/tp) (their W_UK/W_UV and o_proj columns); the
//       latent, one K/V head, is replicated (as ParallelAttention replicates a single K/V head).
//   CP: the latent rows are all-gathered over ATTN_CP like K/V (write_cp_kv).
#pragma once
#include "loom/layers/attention.h"
#include "loom/layers/forward_context.h"
#include "loom/layers/ops.h"
#include "loom/layers/parallel_state.h"
#include "loom/layers/shard_loader.h"
#include "loom/tensor/kv_buffers.h"

namespace loom::layers {

struct MlaShape {
  int64_t hidden = 0, heads = 0;
  int64_t q_lora_rank = 0;  // 0: q_proj
  int64_t kv_lora_rank = 0, nope_dim = 0, rope_dim = 0, v_dim = 0;
  float softmax_scale = 1.0f;

  // One token of one layer in the cache: key [k_pe | c], and the value c again where the attention
  // kernel reads it from a V cache (the CPU, loom's small-latent CUDA kernel); FlashInfer's MLA
  // kernel reads it from the key, so `value_cached` false leaves the V cache empty.
  KvLayout kv_layout(int64_t layers, DType dtype, bool value_cached) const {
    return {layers, 1, rope_dim + kv_lora_rank, value_cached ? kv_lora_rank : 0, dtype};
  }
};

class MlaAttention {
 public:
  MlaAttention() = default;
  // `prefix`: "model.layers.N.self_attn."
  MlaAttention(const ShardLoader& w, const std::string& prefix, const MlaShape& shape, const ParallelState& ps);
  // x [T, H] (this rank's attention tokens) -> [T, H], the sum over ATTN_TP done.
  Tensor forward(const Tensor& x, int64_t layer, const ops::Rope& rope, const ForwardContext& ctx) const;

 private:
  Tensor query(const Tensor& x) const;  // [T, local heads · (rope + nope)], each head [q_pe | q_nope]

  Tensor q_proj_, q_a_proj_, q_a_norm_, q_b_proj_;  // q_proj_ or the q_a/q_b pair (q_lora_rank > 0)
  Tensor kv_a_proj_, kv_a_norm_;                    // rows [k_pe | c], [kv_lora_rank]
  Tensor w_uk_t_, w_uv_;                            // per local head: W_UKᵀ [c, nope], W_UV [v, c]
  Tensor o_proj_;                                   // [H, local heads · v]
  MlaShape shape_;
  Range heads_;
  const ParallelState* ps_ = nullptr;
};

}  // namespace loom::layers
