// Decode-sized matrix products and the decode router: few rows against large bf16 weights are
// bound by reading the weights once, so each warp streams a weight row (or a part of one) with
// 16-byte loads (weight_stream.cuh) and reduces in f32 with shuffles; no tensor cores, no tiles.
// Every output element is computed in the same order whatever the number of rows, so a row's
// result does not depend on the batch it was computed in (graphs and eager agree). The experts'
// decode kernels are in moe_decode.cu.
#include <algorithm>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/pdl.cuh"
#include "loom/kernels/cuda/route_topk.cuh"
#include "loom/kernels/cuda/weight_stream.cuh"
#include "loom/tensor/env.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

using namespace weight_stream;

// The weights of one launch: target j's blocks [block_end[j - 1], block_end[j]) compute
// y_j = x · w_jᵀ (n_j outputs).
struct GemvSegments {
  const bf16* w[kMaxGemvTargets];
  bf16* y[kMaxGemvTargets];
  int64_t n[kMaxGemvTargets];
  int parts[kMaxGemvTargets];  // k_parts(n_j, k): each weight's result is that of its own launch
  unsigned block_end[kMaxGemvTargets];
  int count;
};

// How many warps share one weight row, each summing a contiguous part of K (a power of two
// dividing kWarps). Few rows leave the GPU's memory pipes idle unless K is split: a 2048 x 4096
// weight streams in 6.1 µs with 4 parts a row against 7.5 µs with 2 rows a warp, a router's
// 128 x 2048 in 1.8 against 2.7 µs; 4,096 rows or more keep one warp a row (H200, cold weights,
// launches back to back in a graph: bench/NOTES.md). At least 2 chunks of 8 per lane a part.
// The o projection's 1,024 blocks (two rows at 4 parts) are more than one wave of 6 blocks an SM;
// capped at 2 parts (512 blocks, one wave) bs-1 decode was slower (3.431 against 3.384 ms on an H100).
int k_parts(int64_t n, int64_t k) {
  int parts = 1;
  if (n >= 4096) return parts;
  while (parts < kWarps && n * parts < 8192 && k / 8 / (parts * 2) >= 64) parts *= 2;
  return parts;
}

// Blocks for n rows of `parts` warps each (gemv_block's layout).
int64_t gemv_blocks(int64_t n, int parts) {
  const int64_t rows_per_block = kWarps / parts;
  return (n + rows_per_block - 1) / rows_per_block;
}

// y[i, row] = x[i, :] · w[row, :] for i < m <= M over block `block`'s rows: a warp per (row, part
// of K), kWarps / parts rows a block; the parts' sums are added in part order, so a row's result
// depends on n and k only, never on m. Every thread of the block must call this.
template <int M, bool Preload>
__device__ __forceinline__ void gemv_block(const bf16* x, const bf16* w, bf16* y, int m, int64_t n, int k, int parts,
                                           unsigned block, bool trigger_first = false) {
  __shared__ float part_sum[kWarps][M];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(block) * (kWarps / parts) + warp / parts;
  const int part = warp % parts;
  const int k8 = k / 8, per = (k8 + parts - 1) / parts;
  const int begin = part * per, count = max(0, min(per, k8 - begin));
  float acc[1][M] = {};
  const uint4* rows[1] = {reinterpret_cast<const uint4*>(w) + row * k8 + begin};
  const bool live = row < n && count > 0;
  // The weights do not depend on the kernel before (pdl.cuh): with Preload the first kUnroll chunks
  // a lane are already in registers when the wait returns. (A bulk L2 prefetch of the warp's whole
  // row part before the wait, as well, made bs-1 decode 1.5-3 % slower: bench/NOTES.md.)
  uint4 first[1][kUnroll];
  if (Preload && live) load_chunks<1, kUnroll>(rows, lane, count, weight_policy(), first);
  wait_and_allow_dependents(trigger_first);
  if (live) {
    const uint4* xs = reinterpret_cast<const uint4*>(x) + begin;
    if (Preload) dot_chunks<1, M, kUnroll>(first, xs, k8, m, lane, count, acc);
    lane_dots<1, M>(rows, xs, k8, m, count, acc, weight_policy(), Preload ? lane + 32 * kUnroll : lane);
  }
#pragma unroll
  for (int i = 0; i < M; ++i) acc[0][i] = warp_sum(acc[0][i]);
  if (parts == 1) {
#pragma unroll
    for (int i = 0; i < M; ++i)
      if (lane == 0 && i < m && row < n) y[i * n + row] = to_bf(acc[0][i]);
    return;
  }
  if (lane == 0)
#pragma unroll
    for (int i = 0; i < M; ++i) part_sum[warp][i] = acc[0][i];
  __syncthreads();
  if (part == 0 && lane < m && row < n) {
    float v = 0;
    for (int j = 0; j < parts; ++j) v += part_sum[warp + j][lane];
    y[lane * n + row] = to_bf(v);
  }
}

// This block's target of a launch over several weights. The target is picked with constant
// indices only: indexing the parameter arrays with a runtime j made every thread copy them to its
// stack first (120 bytes a thread of local-memory traffic, which doubled the time of a 21 MB GEMV).
struct GemvPick {
  const bf16* w;
  bf16* y;
  int64_t n;
  int parts;
  unsigned block;  // within the target
};
__device__ __forceinline__ GemvPick pick_target(const GemvSegments& seg) {
  const bf16* w = seg.w[0];
  bf16* y = seg.y[0];
  int64_t n = seg.n[0];
  int parts = seg.parts[0];
  unsigned first = 0;
#pragma unroll
  for (int j = 1; j < kMaxGemvTargets; ++j)
    if (j < seg.count && blockIdx.x >= seg.block_end[j - 1])
      w = seg.w[j], y = seg.y[j], n = seg.n[j], parts = seg.parts[j], first = seg.block_end[j - 1];
  return {w, y, n, parts, blockIdx.x - first};
}

template <int M, bool Preload>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const bf16* x, GemvSegments seg, int m, int k,
                                                        bool trigger_first) {
  const GemvPick p = pick_target(seg);
  gemv_block<M, Preload>(x, p.w, p.y, m, p.n, k, p.parts, p.block, trigger_first);
}

// The router of a decode step: logits = x · wᵀ (bf16, as ops::linear rounds them), then the last
// block to finish routes the m <= kWarps tokens, a warp each (route_topk.cuh).
template <int M, bool Preload>
__global__ void __launch_bounds__(kThreads) router_topk_kernel(const bf16* x, const bf16* w, bf16* logits, int m,
                                                               int e, int k, int parts, int top_k, bool renormalize,
                                                               float* weights, int32_t* ids, unsigned* done) {
  extern __shared__ float probs[];  // [kWarps][e]
  __shared__ bool last;
  gemv_block<M, Preload>(x, w, logits, m, e, k, parts, blockIdx.x);
  __threadfence();  // this block's logits are visible before it counts itself
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(done, 1u) == gridDim.x - 1;
    if (last) *done = 0;  // ready for the next launch
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int warp = threadIdx.x >> 5;
  if (warp < m) route_token(logits, warp, e, top_k, renormalize, weights, ids, 1, 1, 1.0f, probs + warp * e);
}

// LOOM_GEMV_PRELOAD (gemv_block) is on unless set to 0: with PDL's trigger first, bs-1 decode 3.087
// -> 2.974 ms on an H200. Neither a 32-register copy for one wave of the o projection's blocks
// (LOOM_GEMV_ONE_WAVE) nor the whole row part staged in shared memory before the wait
// (LOOM_GEMV_PRELOAD=smem) helped (bench/NOTES.md); both were removed.
bool gemv_preload() {
  static const bool on = !env_is("LOOM_GEMV_PRELOAD", "0");
  return on;
}

// The instantiation for m rows (M = 1, 2, 4 or 8); Preload: LOOM_GEMV_PRELOAD.
template <bool Preload>
auto gemv_kernel_for(int64_t m) {
  return m == 1   ? gemv_kernel<1, Preload>
         : m == 2 ? gemv_kernel<2, Preload>
         : m <= 4 ? gemv_kernel<4, Preload>
                  : gemv_kernel<8, Preload>;
}
template <bool Preload>
auto router_kernel_for(int64_t m) {
  return m == 1   ? router_topk_kernel<1, Preload>
         : m == 2 ? router_topk_kernel<2, Preload>
         : m <= 4 ? router_topk_kernel<4, Preload>
                  : router_topk_kernel<8, Preload>;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool gemv_applies(int64_t m, int64_t k, const void* x, const void* w) {
  return m >= 1 && m <= kDecodeMaxRows && k % 8 == 0 && k < (int64_t(1) << 31) && aligned16(x) && aligned16(w);
}

void gemv(const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k, cudaStream_t s) {
  const GemvTarget target{w, y, n};
  gemv_multi(x, &target, 1, m, k, s);
}

namespace {

// gemv_multi's launch with `choice` of kernel (automatic: the switches' choice).
void launch_gemv(const void* x, const GemvTarget* targets, int count, int64_t m, int64_t k, GemvKernel choice,
                 cudaStream_t s) {
  LOOM_CHECK(count >= 1 && count <= kMaxGemvTargets, "gemv: ", count, " weights in one launch (1..",
             kMaxGemvTargets, ")");
  GemvSegments seg{};
  seg.count = count;
  int64_t blocks = 0;
  for (int j = 0; j < count; ++j) {
    LOOM_CHECK(gemv_applies(m, k, x, targets[j].w), "gemv: ", m, " rows of K ", k, " (needs 1..", kDecodeMaxRows,
               " rows, K % 8 == 0, 16-byte aligned)");
    seg.w[j] = static_cast<const bf16*>(targets[j].w);
    seg.y[j] = static_cast<bf16*>(targets[j].y);
    seg.n[j] = targets[j].n;
    seg.parts[j] = k_parts(targets[j].n, k);
    blocks += gemv_blocks(targets[j].n, seg.parts[j]);
    seg.block_end[j] = static_cast<unsigned>(blocks);
  }
  if (blocks == 0) return;
  if (choice == GemvKernel::automatic) choice = gemv_preload() ? GemvKernel::registers : GemvKernel::plain;
  auto* kernel = choice == GemvKernel::registers ? gemv_kernel_for<true>(m) : gemv_kernel_for<false>(m);
  // LOOM_DECODE_EXTRA: "qkv" repeats a launch over several weights, "o" one over a single weight of
  // at most 16,384 rows (the o projection, not the lm_head).
  const int launches = count > 1 ? launches_of("qkv") : targets[0].n <= 16384 ? launches_of("o") : 1;
  for (int i = 0; i < launches; ++i)
    launch_pdl(kernel, static_cast<unsigned>(blocks), kThreads, 0, s, static_cast<const bf16*>(x), seg,
               static_cast<int>(m), static_cast<int>(k), pdl_trigger_first());
}

}  // namespace

void gemv_multi(const void* x, const GemvTarget* targets, int count, int64_t m, int64_t k, cudaStream_t s) {
  launch_gemv(x, targets, count, m, k, GemvKernel::automatic, s);
}

void gemv_with(GemvKernel kernel, const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k,
               cudaStream_t s) {
  const GemvTarget target{w, y, n};
  launch_gemv(x, &target, 1, m, k, kernel, s);
}

bool router_topk_applies(int64_t m, int64_t hidden, int64_t experts, int64_t top_k, const void* x, const void* w) {
  return gemv_applies(m, hidden, x, w) && m <= kWarps && experts >= top_k && top_k >= 1 && top_k <= 32 &&
         experts * kWarps * static_cast<int64_t>(sizeof(float)) <= 32 * 1024;
}

void router_topk(const void* x, const void* w, void* logits, int64_t m, int64_t hidden, int64_t experts,
                 int64_t top_k, bool renormalize, float* weights, int32_t* ids, cudaStream_t s) {
  LOOM_CHECK(router_topk_applies(m, hidden, experts, top_k, x, w), "router_topk: ", m, " tokens, hidden ", hidden,
             ", top-", top_k, " of ", experts, " experts");
  const int parts = k_parts(experts, hidden);
  const unsigned blocks = static_cast<unsigned>(gemv_blocks(experts, parts));
  const size_t smem = kWarps * experts * sizeof(float);
  const auto* xb = static_cast<const bf16*>(x);
  const auto* wb = static_cast<const bf16*>(w);
  auto* lb = static_cast<bf16*>(logits);
  const int mi = static_cast<int>(m), hi = static_cast<int>(hidden), e = static_cast<int>(experts);
  const int k = static_cast<int>(top_k);
  unsigned* done = completion_counters();
  auto* kernel = gemv_preload() ? router_kernel_for<true>(m) : router_kernel_for<false>(m);
  for (int i = 0; i < launches_of("router"); ++i)
    launch_pdl(kernel, blocks, kThreads, smem, s, xb, wb, lb, mi, e, hi, parts, k, renormalize, weights, ids, done);
}

}  // namespace loom::kernels::cuda
