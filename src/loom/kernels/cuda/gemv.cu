// Decode-sized matrix products: few rows against large bf16 weights are bound by reading the
// weights once, so each warp streams whole weight rows with 16-byte loads (several in flight per
// lane) and reduces in f32 with shuffles; no tensor cores, no tiles, no shared-memory staging.
// Every output element is computed in the same order whatever the number of rows, so a row's
// result does not depend on the batch it was computed in (graphs and eager agree).
#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/route_topk.cuh"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kUnroll = 4;      // 16-byte chunks per lane loaded before any is used (8 was slower: bench/NOTES.md)
constexpr int kDenseRows = 2;   // weight rows per warp in the dense GEMV
constexpr int kMaxTopK = 32;

// Weights are read once: keep them out of L1 (the activations stay there).
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ __forceinline__ float lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

// acc + Σ a[i] b[i] over 8 bf16 pairs, in f32.
__device__ __forceinline__ float dot8(const uint4& a, const uint4& b, float acc) {
  acc = fmaf(lo(a.x), lo(b.x), acc);
  acc = fmaf(hi(a.x), hi(b.x), acc);
  acc = fmaf(lo(a.y), lo(b.y), acc);
  acc = fmaf(hi(a.y), hi(b.y), acc);
  acc = fmaf(lo(a.z), lo(b.z), acc);
  acc = fmaf(hi(a.z), hi(b.z), acc);
  acc = fmaf(lo(a.w), lo(b.w), acc);
  acc = fmaf(hi(a.w), hi(b.w), acc);
  return acc;
}

// This lane's partial dots of R weight rows with M vectors (first `m` valid), k8 chunks of 8.
template <int R, int M>
__device__ __forceinline__ void lane_dots(const uint4* const (&rows)[R], const uint4* x, int64_t x_stride8, int m,
                                          int k8, float (&acc)[R][M]) {
  const int lane = threadIdx.x & 31;
  for (int c0 = lane; c0 < k8; c0 += 32 * kUnroll) {
    uint4 w[R][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) w[r][u] = c0 + 32 * u < k8 ? load_stream(rows[r] + c0 + 32 * u) : uint4{};
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * u;
      if (c >= k8) break;
#pragma unroll
      for (int i = 0; i < M; ++i) {
        if (i >= m) break;
        const uint4 xv = __ldg(x + i * x_stride8 + c);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][i] = dot8(w[r][u], xv, acc[r][i]);
      }
    }
  }
}

// The weights of one launch: segment j's blocks [block_end[j - 1], block_end[j]) compute
// y_j = x · w_jᵀ (n_j outputs).
struct GemvSegments {
  const bf16* w[kMaxGemvTargets];
  bf16* y[kMaxGemvTargets];
  int64_t n[kMaxGemvTargets];
  unsigned block_end[kMaxGemvTargets];
  int count;
};

// y[i, n] = x[i, :] · w[n, :] for i < m <= M over block `block`'s rows; each warp owns kDenseRows
// consecutive n.
template <int M>
__device__ __forceinline__ void gemv_block(const bf16* x, const bf16* w, bf16* y, int m, int64_t n, int k,
                                           unsigned block) {
  const int64_t n0 = (static_cast<int64_t>(block) * kWarps + (threadIdx.x >> 5)) * kDenseRows;
  if (n0 >= n) return;
  const int k8 = k / 8;
  const uint4* rows[kDenseRows];
#pragma unroll
  for (int r = 0; r < kDenseRows; ++r)  // a row past the end re-reads row n0 and is not written
    rows[r] = reinterpret_cast<const uint4*>(w) + (n0 + r < n ? n0 + r : n0) * k8;
  float acc[kDenseRows][M] = {};
  lane_dots<kDenseRows, M>(rows, reinterpret_cast<const uint4*>(x), k8, m, k8, acc);
#pragma unroll
  for (int r = 0; r < kDenseRows; ++r)
#pragma unroll
    for (int i = 0; i < M; ++i) {
      const float v = warp_sum(acc[r][i]);
      if ((threadIdx.x & 31) == 0 && i < m && n0 + r < n) y[i * n + n0 + r] = to_bf(v);
    }
}

template <int M>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const bf16* x, GemvSegments seg, int m, int k) {
  int j = 0;
  while (j + 1 < seg.count && blockIdx.x >= seg.block_end[j]) ++j;
  gemv_block<M>(x, seg.w[j], seg.y[j], m, seg.n[j], k, blockIdx.x - (j > 0 ? seg.block_end[j - 1] : 0u));
}

// The router of a decode step: logits = x · wᵀ (bf16, as ops::linear rounds them), then the last
// block to finish routes the m <= kWarps tokens, a warp each (route_topk.cuh).
template <int M>
__global__ void __launch_bounds__(kThreads) router_topk_kernel(const bf16* x, const bf16* w, bf16* logits, int m,
                                                               int e, int k, int top_k, bool renormalize,
                                                               float* weights, int32_t* ids, unsigned* done) {
  extern __shared__ float probs[];  // [kWarps][e]
  __shared__ bool last;
  gemv_block<M>(x, w, logits, m, e, k, blockIdx.x);
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

// MoE decode, gate/up: for routed slot blockIdx.y (token slot / top_k) and intermediate index i
// (one per warp), act[slot, i] = silu(gate_i · x) * (up_i · x). Gate and up are rounded to bf16
// first, as the grouped path stores them. Slots of other ranks' experts are skipped (never read).
__global__ void __launch_bounds__(kThreads) moe_decode_gate_up_kernel(const bf16* x, const int32_t* ids,
                                                                      int64_t expert_begin, int64_t experts,
                                                                      int top_k, const bf16* w, int inter,
                                                                      int hidden, bf16* act) {
  const int64_t slot = blockIdx.y;
  const int64_t e = ids[slot] - expert_begin;
  const int i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (e < 0 || e >= experts || i >= inter) return;
  const int k8 = hidden / 8;
  const uint4* base = reinterpret_cast<const uint4*>(w) + e * 2 * inter * int64_t(k8);
  const uint4* rows[2] = {base + int64_t(i) * k8, base + int64_t(inter + i) * k8};
  float acc[2][1] = {};
  lane_dots<2, 1>(rows, reinterpret_cast<const uint4*>(x) + (slot / top_k) * k8, 0, 1, k8, acc);
  const float g = to_f(to_bf(warp_sum(acc[0][0]))), u = to_f(to_bf(warp_sum(acc[1][0])));
  if ((threadIdx.x & 31) == 0) act[slot * inter + i] = to_bf(g / (1.0f + __expf(-g)) * u);
}

// MoE decode, down + weighted combine: out[t, h] = Σ_j weight[t, j] · (down[e_j][h, :] · act[t·k + j]),
// over token t's local experts (0 when none), one h per warp. The experts' chunks are walked as one
// flat range so that loads of several experts are in flight together.
__global__ void __launch_bounds__(kThreads) moe_decode_down_kernel(const bf16* act, const int32_t* ids,
                                                                   const float* weights, int64_t expert_begin,
                                                                   int64_t experts, int top_k, const bf16* w,
                                                                   int hidden, int inter, bf16* out) {
  __shared__ const uint4* s_rows[kMaxTopK];  // expert e_j's down matrix
  __shared__ float s_weight[kMaxTopK];
  __shared__ int s_slot[kMaxTopK];
  __shared__ int s_count;
  const int64_t t = blockIdx.y;
  const int k8 = inter / 8;
  if (threadIdx.x == 0) {  // the token's local slots, in slot order
    int c = 0;
    for (int j = 0; j < top_k; ++j) {
      const int64_t e = ids[t * top_k + j] - expert_begin;
      if (e < 0 || e >= experts) continue;
      s_rows[c] = reinterpret_cast<const uint4*>(w) + e * hidden * int64_t(k8);
      s_weight[c] = weights[t * top_k + j];
      s_slot[c] = static_cast<int>(t * top_k + j);
      ++c;
    }
    s_count = c;
  }
  __syncthreads();
  const int h = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (h >= hidden) return;
  const int lane = threadIdx.x & 31, total = s_count * k8;
  const uint4* a = reinterpret_cast<const uint4*>(act);
  float acc = 0;
  for (int f0 = lane; f0 < total; f0 += 32 * kUnroll) {
    uint4 wv[kUnroll];
    int j[kUnroll], c[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int f = f0 + 32 * u;
      j[u] = f < total ? f / k8 : 0;
      c[u] = f - j[u] * k8;
      wv[u] = f < total ? load_stream(s_rows[j[u]] + int64_t(h) * k8 + c[u]) : uint4{};
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (f0 + 32 * u >= total) break;
      const float d = dot8(wv[u], __ldg(a + int64_t(s_slot[j[u]]) * k8 + c[u]), 0.0f);
      acc = fmaf(s_weight[j[u]], d, acc);
    }
  }
  acc = warp_sum(acc);
  if (lane == 0) out[t * hidden + h] = to_bf(acc);
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

void gemv_multi(const void* x, const GemvTarget* targets, int count, int64_t m, int64_t k, cudaStream_t s) {
  LOOM_CHECK(count >= 1 && count <= kMaxGemvTargets, "gemv: ", count, " weights in one launch (1..",
             kMaxGemvTargets, ")");
  GemvSegments seg{};
  seg.count = count;
  const int64_t per_block = int64_t(kWarps) * kDenseRows;
  int64_t blocks = 0;
  for (int j = 0; j < count; ++j) {
    LOOM_CHECK(gemv_applies(m, k, x, targets[j].w), "gemv: ", m, " rows of K ", k, " (needs 1..", kDecodeMaxRows,
               " rows, K % 8 == 0, 16-byte aligned)");
    seg.w[j] = static_cast<const bf16*>(targets[j].w);
    seg.y[j] = static_cast<bf16*>(targets[j].y);
    seg.n[j] = targets[j].n;
    blocks += (targets[j].n + per_block - 1) / per_block;
    seg.block_end[j] = static_cast<unsigned>(blocks);
  }
  if (blocks == 0) return;
  const auto* xb = static_cast<const bf16*>(x);
  const int mi = static_cast<int>(m), ki = static_cast<int>(k);
  const unsigned grid = static_cast<unsigned>(blocks);
  if (m == 1) gemv_kernel<1><<<grid, kThreads, 0, s>>>(xb, seg, mi, ki);
  else if (m == 2) gemv_kernel<2><<<grid, kThreads, 0, s>>>(xb, seg, mi, ki);
  else if (m <= 4) gemv_kernel<4><<<grid, kThreads, 0, s>>>(xb, seg, mi, ki);
  else gemv_kernel<8><<<grid, kThreads, 0, s>>>(xb, seg, mi, ki);
  CUDA_CHECK_LAUNCH("gemv");
}

bool router_topk_applies(int64_t m, int64_t hidden, int64_t experts, int64_t top_k, const void* x, const void* w) {
  return gemv_applies(m, hidden, x, w) && m <= kWarps && experts >= top_k && top_k >= 1 && top_k <= 32 &&
         experts * kWarps * static_cast<int64_t>(sizeof(float)) <= 32 * 1024;
}

void router_topk(const void* x, const void* w, void* logits, int64_t m, int64_t hidden, int64_t experts,
                 int64_t top_k, bool renormalize, float* weights, int32_t* ids, cudaStream_t s) {
  LOOM_CHECK(router_topk_applies(m, hidden, experts, top_k, x, w), "router_topk: ", m, " tokens, hidden ", hidden,
             ", top-", top_k, " of ", experts, " experts");
  const int64_t per_block = int64_t(kWarps) * kDenseRows;
  const unsigned blocks = static_cast<unsigned>((experts + per_block - 1) / per_block);
  const size_t smem = kWarps * experts * sizeof(float);
  const auto* xb = static_cast<const bf16*>(x);
  const auto* wb = static_cast<const bf16*>(w);
  auto* lb = static_cast<bf16*>(logits);
  const int mi = static_cast<int>(m), hi = static_cast<int>(hidden), e = static_cast<int>(experts);
  const int k = static_cast<int>(top_k);
  unsigned* done = completion_counters();
  if (m == 1) router_topk_kernel<1><<<blocks, kThreads, smem, s>>>(xb, wb, lb, mi, e, hi, k, renormalize, weights, ids, done);
  else if (m == 2) router_topk_kernel<2><<<blocks, kThreads, smem, s>>>(xb, wb, lb, mi, e, hi, k, renormalize, weights, ids, done);
  else if (m <= 4) router_topk_kernel<4><<<blocks, kThreads, smem, s>>>(xb, wb, lb, mi, e, hi, k, renormalize, weights, ids, done);
  else router_topk_kernel<8><<<blocks, kThreads, smem, s>>>(xb, wb, lb, mi, e, hi, k, renormalize, weights, ids, done);
  CUDA_CHECK_LAUNCH("router_topk");
}

bool moe_decode_applies(int64_t tokens, int64_t top_k, int64_t hidden, int64_t inter, const void* x,
                        const void* w_gate_up, const void* w_down) {
  return tokens >= 1 && tokens <= kDecodeMaxRows && top_k >= 1 && top_k <= kMaxTopK && hidden % 8 == 0 &&
         inter % 8 == 0 && aligned16(x) && aligned16(w_gate_up) && aligned16(w_down);
}

void moe_decode(const void* x, const int32_t* ids, const float* weights, int64_t tokens, int64_t top_k,
                int64_t expert_begin, int64_t local_experts, const void* w_gate_up, const void* w_down,
                int64_t hidden, int64_t inter, void* act, void* out, cudaStream_t s) {
  LOOM_CHECK(moe_decode_applies(tokens, top_k, hidden, inter, x, w_gate_up, w_down), "moe_decode: ", tokens,
             " tokens, top-", top_k, ", hidden ", hidden, ", intermediate ", inter);
  const int hi = static_cast<int>(hidden), ii = static_cast<int>(inter), k = static_cast<int>(top_k);
  const dim3 up_grid(static_cast<unsigned>((inter + kWarps - 1) / kWarps), static_cast<unsigned>(tokens * top_k));
  moe_decode_gate_up_kernel<<<up_grid, kThreads, 0, s>>>(static_cast<const bf16*>(x), ids, expert_begin,
                                                         local_experts, k, static_cast<const bf16*>(w_gate_up), ii,
                                                         hi, static_cast<bf16*>(act));
  CUDA_CHECK_LAUNCH("moe_decode gate_up");
  const dim3 down_grid(static_cast<unsigned>((hidden + kWarps - 1) / kWarps), static_cast<unsigned>(tokens));
  moe_decode_down_kernel<<<down_grid, kThreads, 0, s>>>(static_cast<const bf16*>(act), ids, weights, expert_begin,
                                                        local_experts, k, static_cast<const bf16*>(w_down), hi, ii,
                                                        static_cast<bf16*>(out));
  CUDA_CHECK_LAUNCH("moe_decode down");
}

}  // namespace loom::kernels::cuda
