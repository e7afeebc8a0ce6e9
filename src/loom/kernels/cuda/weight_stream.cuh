// Streaming decode weights through registers (gemv.cu, moe_decode.cu): each warp reads a weight row
// (or a part of one) with 16-byte loads, several in flight a lane, and sums in f32 in a fixed
// chunk order (lane, lane + 32, ...), so a row's result never depends on how the loads were
// grouped or how many input rows shared the launch.
#pragma once
#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda::weight_stream {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kUnroll = 4;  // 16-byte chunks per lane loaded before any is used (8 was slower: bench/NOTES.md)

// Weights are read once: keep them out of L1 (the activations stay there), and out of L2's way
// under `policy` (weight_policy).
__device__ __forceinline__ uint4 load_stream(const uint4* p, uint64_t policy) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "l"(policy));
  return v;
}

// Streamed weights are marked evict-first: they leave L2 before what a step reads again (the KV
// cache, activations, small weights). bs-1 decode 3.217 -> 3.113 ms (bench/NOTES.md).
__device__ __forceinline__ uint64_t weight_policy() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  return p;
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

// Loads this lane's chunks c0 + 32u (u < U) of R weight rows (zeros past k8).
template <int R, int U>
__device__ __forceinline__ void load_chunks(const uint4* const (&rows)[R], int c0, int k8, uint64_t policy,
                                            uint4 (&w)[R][U]) {
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int r = 0; r < R; ++r) w[r][u] = c0 + 32 * u < k8 ? load_stream(rows[r] + c0 + 32 * u, policy) : uint4{};
}

// acc[r][i] += w's chunks (load_chunks at c0) · the M vectors' matching chunks (first `m` valid).
template <int R, int M, int U>
__device__ __forceinline__ void dot_chunks(const uint4 (&w)[R][U], const uint4* x, int64_t x_stride8, int m, int c0,
                                           int k8, float (&acc)[R][M]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
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

// This lane's partial dots of R weight rows with M vectors (first `m` valid), k8 chunks of 8, from
// chunk c_begin on (a caller that loaded the first U chunks itself passes lane + 32 · U).
template <int R, int M, int U = kUnroll>
__device__ __forceinline__ void lane_dots(const uint4* const (&rows)[R], const uint4* x, int64_t x_stride8, int m,
                                          int k8, float (&acc)[R][M], uint64_t policy, int c_begin = -1) {
  for (int c0 = c_begin >= 0 ? c_begin : threadIdx.x & 31; c0 < k8; c0 += 32 * U) {
    uint4 w[R][U];
    load_chunks<R, U>(rows, c0, k8, policy, w);
    dot_chunks<R, M, U>(w, x, x_stride8, m, c0, k8, acc);
  }
}

}  // namespace loom::kernels::cuda::weight_stream
