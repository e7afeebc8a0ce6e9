// Launchers of the CUDA kernels (bf16 activations, fp32 accumulation). Raw device pointers and
// the stream to run on; callers (layers/ops_cuda.cc) own every buffer: no launcher allocates.
// "bf16" pointers are void* so that this header needs no CUDA type beyond cudaStream_t.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace loom::kernels::cuda {

// ---- elementwise.cu ----
// out[i] = table[ids[i]] (rows of `dim`); an id outside [0, vocab) gives a zero row.
void embedding(const void* table, const int32_t* ids, void* out, int64_t n, int64_t dim, int64_t vocab,
               cudaStream_t s);
// Vocab-parallel lookup: table holds ids [first, first + rows); other ids give a zero row.
void embedding_slice(const void* table, const int32_t* ids, void* out, int64_t n, int64_t dim, int64_t first,
                     int64_t rows, cudaStream_t s);
// out[i] = x[rows[i]].
void gather_rows(const void* x, const int32_t* rows, void* out, int64_t n, int64_t dim, cudaStream_t s);
// With residual: residual += x (rounded to bf16), out = rmsnorm(residual) * w. Without: out = rmsnorm(x) * w.
void rms_norm(const void* x, void* residual, const void* w, void* out, int64_t rows, int64_t dim, float eps,
              cudaStream_t s);
// r += x, n elements.
void add_inplace(void* r, const void* x, int64_t n, cudaStream_t s);
// Per-head RMSNorm (when the norm weight is given) then NeoX RoPE, in place on q [T, hq, d], k [T, hk, d].
void qk_norm_rope(void* q, void* k, const void* q_norm, const void* k_norm, const int32_t* positions,
                  const float* inv_freq, int64_t tokens, int64_t hq, int64_t hk, int64_t d, int64_t rotary_dim,
                  float scaling, float eps, cudaStream_t s);
// gate_up [rows, 2I] -> silu(gate) * up [rows, I].
void silu_and_mul(const void* gate_up, void* out, int64_t rows, int64_t inter, cudaStream_t s);
// One token per row of logits [rows, vocab] (bf16): argmax (ties: lower id) when temperature <= 0,
// else a sample from softmax(logits / temperature) (Gumbel-max, keyed by seed, offset and row).
void select_tokens(const void* logits, int64_t rows, int64_t vocab, float temperature, uint64_t seed,
                   uint64_t offset, int32_t* out, cudaStream_t s);
// dst = src (bytes, n % 16 == 0, 16-byte aligned): the bandwidth probe of `loom bench`.
void copy_kernel(const void* src, void* dst, int64_t nbytes, cudaStream_t s);

// ---- sampling.cu ----
// One row's sampling parameters (engine/sampler.h has the semantics; the kernel matches it).
struct SampleRow {
  double u = 0;            // uniform [0, 1) from the request's RNG (unused when greedy)
  double temperature = 1;  // > 0 unless greedy
  double top_p = 1;
  double min_p = 0;
  int32_t top_k = 0;       // <= 0: off
  int32_t edit_begin = 0;  // this row's edits: [edit_begin, edit_end) of the edit array
  int32_t edit_end = 0;
  uint8_t greedy = 0;
  uint8_t want_logprob = 0;  // out_logprobs[row] = log-softmax of the raw row at the chosen id
  uint8_t skip = 0;          // no token for this row (a prefill chunk that is not the last)
  int32_t mask_row = -1;     // >= 0: only tokens whose bit is set in masks[mask_row] may be drawn
};
// A token's logit after logit_bias, repetition penalty and frequency/presence penalties:
// v = l + bias; v = v > 0 ? v / repetition : v * repetition (when repetition != 1); v -= sub.
struct SampleEdit {
  int32_t token;
  float bias;
  float repetition;
  float sub;
};
// One token per row of logits [rows, ld] (bf16, first `vocab` columns) into out_ids[rows].
// scratch_l / scratch_p: f32 [rows, vocab] each. params / edits / masks live on the device; masks
// holds grammar bitmasks of ceil(vocab / 32) words (bit t of word t / 32 allows token t).
// blocks_per_row: 0 chooses (sampling.cu's sampler_blocks); 1, 2, 4 or 8 asks for that many (1 where
// the device cannot run such clusters).
void sample_rows(const void* logits, int64_t rows, int64_t ld, int64_t vocab, const SampleRow* params,
                 const SampleEdit* edits, const uint32_t* masks, float* scratch_l, float* scratch_p, int32_t* out_ids,
                 float* out_logprobs, cudaStream_t s, int blocks_per_row = 0);
// A step queued before the previous step's ids reached the host (the engine's overlapped decode):
// ids[i] < 0 names row -1 - ids[i] of `previous` (that step's sampled ids, on the device), which
// replaces it; other ids stay. n <= a few hundred: one block.
void resolve_previous_ids(int32_t* ids, int64_t n, const int32_t* previous, cudaStream_t s);

// ---- dummy_fill.cu ----
// io/dummy_weights.cc's generator on the device, bit for bit: out[i] (n elements) is the value of
// full-tensor element (i / run) * src_stride + first + i % run under `key`.
enum class FillType { f32, bf16, f16 };
void dummy_fill(void* out, FillType type, int64_t n, int64_t run, int64_t src_stride, int64_t first, uint64_t key,
                bool norm, float scale, cudaStream_t s);

// ---- moe.cu ----
// Softmax over logits [t, e] (bf16) in f32, top-k (ties: lower id), optional renormalisation,
// then weights times `scale`. groups > 1 (at most 32): the top k among the experts of the
// topk_group groups (of e / groups consecutive experts) whose best probability is highest.
void route_topk(const void* logits, int64_t t, int64_t e, int64_t k, bool renormalize, float* weights,
                int32_t* ids, cudaStream_t s, int64_t groups = 1, int64_t topk_group = 1, float scale = 1.0f);

// The token order of the grouped expert GEMMs, built on the device (capturable). Routed slots
// i = token * k + j whose expert is local are sorted by expert: expert e's rows are
// [offsets[e], offsets[e+1]) of sorted_token / sorted_weight; slot_pos[i] is slot i's row or -1.
// Tiles of block_m rows never straddle experts: tile_expert / tile_row / num_tiles describe them.
struct MoePlan {
  int32_t* offsets;       // [E_local + 1]
  int32_t* sorted_token;  // [t * k]
  float* sorted_weight;   // [t * k]
  int32_t* slot_pos;      // [t * k]
  int32_t* tile_expert;   // [max_tiles]
  int32_t* tile_row;      // [max_tiles]
  int32_t* num_tiles;     // [1]
  int64_t max_tiles;
  int block_m;
  int32_t* block_counts = nullptr;  // [moe_plan_scratch_ints]: a large batch's plan spread over blocks
};
// ids [t, k]: rows from *valid_tokens on become -1 (no expert; a piecewise graph's padding tokens).
void drop_routes_past(int32_t* ids, int64_t t, int64_t k, const int32_t* valid_tokens, cudaStream_t s);
int moe_block_m(int64_t routed_slots, int64_t local_experts);  // 16 or 64
int64_t moe_max_tiles(int64_t routed_slots, int64_t local_experts, int block_m);
// Scratch ints the plan of this many slots spreads over blocks with (0: it runs in one block).
int64_t moe_plan_scratch_ints(int64_t routed_slots, int64_t local_experts);
void moe_plan(const int32_t* ids, const float* weights, int64_t t, int64_t k, int64_t expert_begin,
              int64_t local_experts, const MoePlan& plan, cudaStream_t s);

// Grouped GEMM over the plan's tiles: C[row, :N] = scale[row] * A[a_row(row), :K] · B[e]ᵀ, where
// B[e] is [N, K] (bf16, row-major, experts `b_expert_stride` elements apart), a_row(row) is
// a_rows[row] when given else row, and scale is 1 when row_scale is null. C is bf16 [rows, N].
void moe_grouped_gemm(const void* a, const int32_t* a_rows, const void* b, int64_t b_expert_stride, int64_t n,
                      int64_t kdim, void* c, const float* row_scale, const MoePlan& plan, cudaStream_t s);
// out[t] = Σ_j y[slot_pos[t*k + j]] over local slots (0 if none); y bf16 [*, h], out bf16 [t, h].
void moe_combine(const void* y, const int32_t* slot_pos, int64_t t, int64_t k, int64_t h, void* out,
                 cudaStream_t s);

// ---- biased.cu ----
// y[m, n] += bias[n].
void add_bias(void* y, const void* bias, int64_t m, int64_t n, cudaStream_t s);
// Experts with biases (gpt-oss), on a plan's expert-sorted rows (rows at or past offsets[experts]
// are left alone): act[r] = activation(gate_up[r] + gate_up_bias[e(r)]) with e(r) the local expert
// whose rows hold r; limit > 0 is the clamped SwiGLU (up + 1)·g·σ(alpha·g), g = min(gate, limit),
// up in [-limit, limit]; else silu(gate)·up. gate_up_bias may be null.
void moe_bias_activation(const void* gate_up, const void* gate_up_bias, const int32_t* offsets, int64_t experts,
                         int64_t rows, int64_t inter, float alpha, float limit, void* act, cudaStream_t s);
// y[r] += row_scale[r] · bias[e(r)] (the down projection's bias, weighted like its output).
void moe_add_expert_bias(void* y, const void* bias, const float* row_scale, const int32_t* offsets, int64_t experts,
                         int64_t rows, int64_t h, cudaStream_t s);

// ---- gemv.cu ----
// Decode-sized products (at most kDecodeMaxRows rows): weight-streaming GEMV kernels. A row's
// result is independent of how many rows share the launch. Keep kDecodeMaxRows a CUDA-graph
// bucket size, so that a padded graph and an eager step of the same batch take the same path.
constexpr int64_t kDecodeMaxRows = 8;
// Whether gemv() takes x [m, k] against w [n, k]: 1 <= m <= kDecodeMaxRows, k % 8 == 0, 16-byte aligned.
bool gemv_applies(int64_t m, int64_t k, const void* x, const void* w);
// y[m, n] = x[m, k] · w[n, k]ᵀ (bf16, f32 accumulation).
void gemv(const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k, cudaStream_t s);
// Several GEMVs over the same x in one launch (a decode step's q, k and v): targets[j].y [m, n] =
// x · targets[j].wᵀ, each weight as gemv() takes it.
constexpr int kMaxGemvTargets = 4;
struct GemvTarget {
  const void* w;
  void* y;
  int64_t n;
};
void gemv_multi(const void* x, const GemvTarget* targets, int count, int64_t m, int64_t k, cudaStream_t s);
// gemv() on a named kernel, for tests: `automatic` is gemv()'s choice; `plain` and `registers` the
// kernel without and with the weight preload into registers (LOOM_GEMV_PRELOAD). Both give the
// same result bit for bit.
enum class GemvKernel { automatic, plain, registers };
void gemv_with(GemvKernel kernel, const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k,
               cudaStream_t s);
// The router of a decode step in one launch: logits [m, experts] = x · wᵀ (bf16), then route_topk's
// softmax top-k (no groups) of each row into weights f32 [m, top_k] and ids i32 [m, top_k].
bool router_topk_applies(int64_t m, int64_t hidden, int64_t experts, int64_t top_k, const void* x, const void* w);
void router_topk(const void* x, const void* w, void* logits, int64_t m, int64_t hidden, int64_t experts,
                 int64_t top_k, bool renormalize, float* weights, int32_t* ids, cudaStream_t s);
// ---- moe_decode.cu ----
// Whether moe_decode() takes this shape (tokens <= kDecodeMaxRows, top_k <= 32, dims % 8 == 0, aligned).
bool moe_decode_applies(int64_t tokens, int64_t top_k, int64_t hidden, int64_t inter, const void* x,
                        const void* w_gate_up, const void* w_down);
// The experts of a few tokens without the sort: out[t] = Σ_j weights[t, j] · down[e](silu(gate[e] x[t]) · up[e] x[t])
// with e = ids[t, j] - expert_begin over local experts (others add 0). act: bf16 scratch [tokens * top_k, inter].
// Each expert weight row is read once per routed slot (few tokens: few repeats).
void moe_decode(const void* x, const int32_t* ids, const float* weights, int64_t tokens, int64_t top_k,
                int64_t expert_begin, int64_t local_experts, const void* w_gate_up, const void* w_down,
                int64_t hidden, int64_t inter, void* act, void* out, cudaStream_t s);

// ---- attention.cu ----
// Paged KV: K/V [slots, hk, d] bf16; sequence s's position p lives in slot
// page_table[s * max_pages + p / page_size] * page_size + p % page_size.
struct PagedKvArgs {
  void* k_cache;
  void* v_cache;
  const int32_t* page_table;
  const int32_t* token_starts;  // [S + 1]
  const int32_t* start_pos;     // [S]
  int64_t num_seqs, max_pages, page_size, hk, d;
  int64_t dv = 0;  // V's head dim when it differs from K's (latent attention); 0: d
};
// Writes k [T, hk, d] and v [T, hk, v_dim] of the step at `positions` into the cache (v null:
// K only, for a cache without V).
void write_kv(const PagedKvArgs& kv, const void* k, const void* v, const int32_t* positions, int64_t tokens,
              cudaStream_t s);
// Causal attention of q [T, hq, d] over each sequence's cache (flash-style, online softmax,
// mma.sync tensor cores), out [T, hq, v_dim]; d at most 128, v_dim = d or at most half of d
// rounded up to 16 (32, 64). max_new_tokens bounds any
// sequence's new tokens. With num_splits > 1 the keys are split across blocks and partials
// (workspace: f32 [num_splits, T, hq, v_dim + 1]) combined after; see attention_splits(). sliding_window > 0 limits
// each query to its last sliding_window positions; sinks (device f32 [hq], or null) add
// exp(sinks[head]) to each softmax's denominator (gpt-oss). new_k / new_v (decode, one token per
// sequence): the step's k and v, which the kernel stores in the cache itself (no write_kv first).
// With `qk` (decode with new_k/new_v only; attention_fuses_qk_norm_rope must hold), q and new_k are
// taken before their per-head RMSNorm and RoPE, which the decode kernel applies as qk_norm_rope
// would (no separate launch); q stays as given, the cache gets the rotated key.
struct QkNormRope {
  const void* q_norm = nullptr;  // bf16 [d] or null (RoPE only)
  const void* k_norm = nullptr;
  const float* inv_freq = nullptr;  // [d / 2]: NeoX over the whole head
  float scaling = 1.0f;
  float eps = 0.0f;
};
void attention(const PagedKvArgs& kv, const void* q, void* out, int64_t tokens, int64_t hq, float scale,
               int64_t max_new_tokens, int num_splits, float* workspace, cudaStream_t s, int64_t sliding_window = 0,
               const float* sinks = nullptr, const void* new_k = nullptr, const void* new_v = nullptr,
               const QkNormRope* qk = nullptr);
// Whether the decode kernel can fold the q/k norm and RoPE in: one new token a sequence, K and V
// of head dim 64 or 128 rotated whole, GQA groups of at most 16.
bool attention_fuses_qk_norm_rope(int64_t hq, int64_t hk, int64_t d, int64_t dv, int64_t rotary_dim);
// Split count for a step: enough blocks to fill the GPU when there are few sequences (decode).
int attention_splits(int64_t num_seqs, int64_t hk, bool decode_only);

}  // namespace loom::kernels::cuda
