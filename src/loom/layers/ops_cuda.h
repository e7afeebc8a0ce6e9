// The CUDA branch of layers/ops.h (same signatures; bf16 activations, fp32 accumulation).
// Defined in ops_cuda.cc; without the CUDA backend each throws.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "loom/layers/ops.h"

namespace loom::layers::ops::cuda {

Tensor embedding(const Tensor& table, const Tensor& ids);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias);
std::vector<Tensor> linears(const Tensor& x, const std::vector<const Tensor*>& weights,
                            const std::vector<const Tensor*>& biases);
Tensor rms_norm(const Tensor& x, const Tensor& w, float eps);
Tensor add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps);
void add_(Tensor& residual, const Tensor& x);
void qk_norm_rope(Tensor& q, Tensor& k, const Tensor* q_norm, const Tensor* k_norm, float eps,
                  const Rope& rope, const ForwardContext& ctx);
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t layer,
                 const AttentionParams& params, const ForwardContext& ctx);
Tensor silu_and_mul(const Tensor& gate_up);
Routing route_topk_softmax(const Tensor& router_logits, int64_t k, bool renormalize);
Routing linear_route_topk_softmax(const Tensor& x, const Tensor& w, int64_t k, bool renormalize, Tensor* logits);
Tensor moe_experts(const Tensor& x, const Routing& routing, const Tensor& w_gate_up,
                   const Tensor& w_down, int64_t expert_begin, const ExpertOptions& options);
Routing route_grouped_topk_softmax(const Tensor& router_logits, const GroupedTopk& g);
Tensor per_head_linear(const Tensor& x, const Tensor& w);
void copy_(Tensor& dst, const Tensor& src);
Tensor gather_rows(const Tensor& x, const Tensor& rows);
void drop_routes_past(Routing& routing, const Tensor& valid_tokens);
// The parallel layers' ops (ops_cuda_parallel.cc).
Tensor embedding_slice(const Tensor& table, const Tensor& ids, int64_t vocab_begin);
void write_kv(const Tensor& k, const Tensor& v, int64_t layer, const ForwardContext& ctx);
void index_add_rows(Tensor& out, const Tensor& src, const Tensor& rows);
DispatchPlan moe_dispatch_plan(const Routing& routing, int peers, int64_t experts);
Routing unpack_routing(const Tensor& meta, int64_t k);
Tensor concat_vocab_shards(const Tensor& shards, int parts, int64_t vocab);

// Whether latent attention (ops::attention with value_in_key) of `latent` + `rope` dims runs on
// `device` (FlashInfer's MLA kernel: latent 512 + 64 on an sm_90 GPU, in a build with FlashInfer).
// Smaller latents run on loom's own attention kernel (model/deepseek_v2.cc checks which).
bool latent_attention_supported(int device, int64_t latent, int64_t rope);
bool attention_folds_qk_norm_rope(const Tensor& q, int64_t kv_heads, const Rope& rope, const ForwardContext& ctx);

// Host work a captured forward needs before each replay: FlashInfer's MLA schedule depends on the
// batch's key counts, which a graph cannot compute. The ops register it while a graph is being
// captured on this thread; the graph runner takes the list after the capture and calls each one,
// on the replay's stream, with the replayed batch's host fields (num_seqs, h_token_starts,
// h_start_pos, max_pages, page_size) before every launch.
using ReplayPrep = std::function<void(const ForwardContext& batch)>;
std::vector<ReplayPrep> take_replay_preps();

// Device time per op, for `loom bench latency --profile-ops`: while on, every op above records
// events around its work (never turn it on around a CUDA-graph capture). take_op_profile()
// waits for the device and returns (op, total ms, calls) sorted by time, then resets.
struct OpTime {
  std::string op;
  double ms = 0;
  int64_t calls = 0;
};
void set_op_profiling(bool on);
std::vector<OpTime> take_op_profile();

}  // namespace loom::layers::ops::cuda
