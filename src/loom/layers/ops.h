// Tensor-level operations the models are written in. Each dispatches on the tensors' device
// to kernels/cpu (fp32 reference) or kernels/cuda (bf16, fp32 accumulation) — ops_cpu.cc and
// ops_cuda.cc. Outputs are new tensors on the inputs' device unless an argument says "in place".
#pragma once
#include <optional>
#include <vector>

#include "loom/layers/forward_context.h"
#include "loom/tensor/tensor.h"

namespace loom::layers::ops {

// table [V, H], ids i32 [T] -> [T, H]
Tensor embedding(const Tensor& table, const Tensor& ids);

// x [T, K] · w[N, K]ᵀ (+ bias [N]) -> [T, N]
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias = nullptr);

// x · w_jᵀ (+ biases[j]) for each weight: one launch on CUDA at decode sizes (a step's q, k and v).
// biases: empty, or one per weight (null: none).
std::vector<Tensor> linears(const Tensor& x, const std::vector<const Tensor*>& weights,
                            const std::vector<const Tensor*>& biases = {});

// RMSNorm over the last dim -> new tensor.
Tensor rms_norm(const Tensor& x, const Tensor& w, float eps);

// residual += x; returns rms_norm(residual). (Fused on CUDA.)
Tensor add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps);

// residual += x in place.
void add_(Tensor& residual, const Tensor& x);

// Rotary tables: inv_freq [rotary_dim/2] f32 and YaRN's attention scaling.
struct Rope {
  Tensor inv_freq;  // on the model's device, f32
  int64_t rotary_dim = 0;
  float scaling = 1.0f;
};

// Per-head RMSNorm (when norm weights are given) then NeoX RoPE, in place, on
// q [T, Hq, D] and k [T, Hk, D] at ctx positions.
void qk_norm_rope(Tensor& q, Tensor& k, const Tensor* q_norm, const Tensor* k_norm, float eps,
                  const Rope& rope, const ForwardContext& ctx);

// Appends k/v of the step to layer `layer`'s pages and attends causally over each sequence's
// cache. q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hk, Dv] -> [T, Hq, Dv].
// qk_norm_rope's arguments, for an attention that applies them itself (AttentionParams::pending).
struct PendingQkNormRope {
  const Tensor* q_norm = nullptr;
  const Tensor* k_norm = nullptr;
  float eps = 0.0f;
  const Rope* rope = nullptr;
};

struct AttentionParams {
  // q and k are still before their per-head norm and RoPE, which the attention kernel applies as
  // it reads them; set only where attention_folds_qk_norm_rope() said it would.
  const PendingQkNormRope* pending = nullptr;
  float scale = 1.0f;
  int64_t sliding_window = 0;     // 0 = full attention
  const Tensor* sinks = nullptr;  // [Hq] f32, gpt-oss
  // v is k's last Dv dims (latent attention: key [k_pe | c], value c). A kernel may then read the
  // value from the cached key (FlashInfer's MLA kernel on CUDA); the CPU reads v as given.
  bool value_in_key = false;
};
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t layer,
                 const AttentionParams& params, const ForwardContext& ctx);
// Whether attention() on this step folds the q/k norm and RoPE into its kernel: every decode step
// on CUDA's decode kernel (a whole-head rotation, head dim 64 or 128; one launch fewer a layer).
// Never on the CPU.
bool attention_folds_qk_norm_rope(const Tensor& q, int64_t kv_heads, const Rope& rope, const ForwardContext& ctx);

// gate_up [T, 2I] -> silu(gate) * up [T, I]
Tensor silu_and_mul(const Tensor& gate_up);

// Router: softmax over expert logits [T, E], top-k; weights renormalised to sum 1 when
// `renormalize`. Returns weights f32 [T, k] and expert ids i32 [T, k].
struct Routing {
  Tensor weights;
  Tensor ids;
};
Routing route_topk_softmax(const Tensor& router_logits, int64_t k, bool renormalize);
// route_topk_softmax(linear(x, w), k, renormalize), in one launch on CUDA at decode sizes; the
// router logits are left in *logits when it is given.
Routing linear_route_topk_softmax(const Tensor& x, const Tensor& w, int64_t k, bool renormalize,
                                  Tensor* logits = nullptr);

// DeepSeek's router: softmax over expert logits [T, E], then the top k of the experts in the best
// `topk_group` of `groups` equal expert groups (kernels/cpu grouped_topk; groups 1: plain top-k);
// weights renormalised to sum 1 when `renormalize`, then multiplied by `scale`.
struct GroupedTopk {
  int64_t k = 1, groups = 1, topk_group = 1;
  bool renormalize = false;
  float scale = 1.0f;  // routed_scaling_factor
};
Routing route_grouped_topk_softmax(const Tensor& router_logits, const GroupedTopk& g);

// What some families add to the plain SwiGLU expert (gpt-oss: biases on both projections and a
// clamped SwiGLU). The defaults are Qwen3-MoE's and Mixtral's expert.
struct ExpertOptions {
  const Tensor* gate_up_bias = nullptr;  // [E_local, 2I], added to gate_up_e x
  const Tensor* down_bias = nullptr;     // [E_local, H], added to down_e(...) (so scaled by the weight)
  // > 0: gpt-oss's activation (up + 1) · g · σ(alpha · g) with g = min(gate, limit) and up
  // clamped to [-limit, limit], instead of silu(gate) · up.
  float swiglu_limit = 0.0f;
  float swiglu_alpha = 1.0f;
  bool plain() const { return !gate_up_bias && !down_bias && swiglu_limit <= 0; }
};

// Routed experts over this rank's experts [expert_begin, expert_begin + E_local):
// out[t] = Σ_j weights[t, j] · down_e(silu(gate_e x) * up_e x) for e = ids[t, j] in range.
// w_gate_up [E_local, 2I, H], w_down [E_local, H, I]. Tokens routed elsewhere contribute 0.
Tensor moe_experts(const Tensor& x, const Routing& routing, const Tensor& w_gate_up,
                   const Tensor& w_down, int64_t expert_begin, const ExpertOptions& options = {});

// out[t, h] = x[t, h] · w[h]ᵀ for every head: x [T, heads, K] (rows and heads at any stride, K
// contiguous), w [heads, N, K] -> [T, heads, N] (latent attention's per-head absorbed weights).
Tensor per_head_linear(const Tensor& x, const Tensor& w);

// dst = src, same shape and dtype, for views whose last dim is contiguous and whose other dims
// flatten to rows of one stride (e.g. narrow() of the last dim): latent attention's slices.
void copy_(Tensor& dst, const Tensor& src);

// Rows `ctx.logit_rows` of x [T, H] -> [R, H].
Tensor gather_rows(const Tensor& x, const Tensor& rows);

// Tokens from valid_tokens (i32 [1], on the routing's device) on are a piecewise graph's padding:
// their expert ids become -1, so no expert runs for them (each would otherwise pull in k experts).
void drop_routes_past(Routing& routing, const Tensor& valid_tokens);

// Ops of the parallel layers.
// Vocab-parallel lookup: table [V_local, H] holds ids [vocab_begin, vocab_begin + V_local); other
// ids give zero rows (the ATTN_TP all-reduce then sums in the owner's row).
Tensor embedding_slice(const Tensor& table, const Tensor& ids, int64_t vocab_begin);
// Writes K/V of ctx's tokens into layer `layer`'s pages without attending (context-parallel
// prefill writes the gathered whole-sequence K/V). k [T, Hk, Dk], v [T, Hk, Dv].
void write_kv(const Tensor& k, const Tensor& v, int64_t layer, const ForwardContext& ctx);
// out[rows[i]] += src[i] for every row i of src, in i order (combining all-to-all MoE results).
void index_add_rows(Tensor& out, const Tensor& src, const Tensor& rows);

// Expert-parallel dispatch: peer p of `peers` owns experts split_range(experts, peers, p). For each
// peer in order, the tokens with at least one expert there, in token order: `rows` i32 [sent] their
// indices, `meta` f32 [sent, 2k] their k expert ids (as floats, exact) then their k weights, and
// `send` the rows per peer. Only `send` crosses to the host: the all-to-all needs the counts there.
struct DispatchPlan {
  Tensor rows, meta;
  std::vector<int64_t> send;
};
DispatchPlan moe_dispatch_plan(const Routing& routing, int peers, int64_t experts);
// meta [n, 2k] (the layout above) -> routing of n tokens.
Routing unpack_routing(const Tensor& meta, int64_t k);

// Vocab-parallel logits: shards [P·R, padded] (member p's R rows, then member p+1's) -> [R, vocab],
// where member p's first split_range(vocab, P, p).length columns land at that range.
Tensor concat_vocab_shards(const Tensor& shards, int parts, int64_t vocab);

}  // namespace loom::layers::ops
