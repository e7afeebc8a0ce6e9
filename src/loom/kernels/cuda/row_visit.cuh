// A pass over one long row (a vocabulary's logits: sampling.cu, select_tokens) by the threads of
// a block, or of several blocks (RowShare): each thread visits its share, ids first, first +
// stride, ... one load at a time, or, where the row's length and alignment allow (`vec`), in
// 16-byte chunks of that stride with U loads in flight. A row of 151,936 values lives in L2; one
// 2- or 4-byte load a step walked it in ~150 dependent round trips (tens of µs a pass), the chunks
// in a handful.
#pragma once
#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda {

// This thread's place among the threads sharing a row: `first` of `stride`.
struct RowShare {
  int64_t first, stride;
};
__device__ __forceinline__ RowShare block_share() { return {threadIdx.x, blockDim.x}; }

__device__ __forceinline__ float as_f32(float v) { return v; }
__device__ __forceinline__ float as_f32(bf16 v) { return to_f(v); }

// Whether visit_row may take 16-byte chunks of a row of n T at x.
template <typename T>
__device__ __forceinline__ bool row_vectorizes(const T* x, int64_t n) {
  return n % (16 / sizeof(T)) == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

// g(c, chunk) for this thread's 16-byte chunks c of x16[0, chunks): first, first + stride, ..., U
// loads in flight.
template <int U, typename G>
__device__ __forceinline__ void visit_chunks16(const RowShare& me, const uint4* x16, int64_t chunks, G g) {
  const int64_t stride = me.stride;
  for (int64_t c0 = me.first; c0 < chunks; c0 += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = c0 + u * stride < chunks ? x16[c0 + u * stride] : uint4{};
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + u * stride;
      if (c >= chunks) break;
      g(c, v[u]);
    }
  }
}

// f(i, x[i] as f32) over this thread's share of the row x[0, n) of float or bf16.
template <int U, typename T, typename F>
__device__ __forceinline__ void visit_row(const RowShare& me, const T* x, int64_t n, bool vec, F f) {
  constexpr int kPer = 16 / sizeof(T);
  if (!vec) {
    for (int64_t i = me.first; i < n; i += me.stride) f(i, as_f32(x[i]));
    return;
  }
  visit_chunks16<U>(me, reinterpret_cast<const uint4*>(x), n / kPer, [&](int64_t c, const uint4& v) {
    const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int j = 0; j < kPer; ++j) f(kPer * c + j, as_f32(e[j]));
  });
}

// f(i, v, c) over this thread's share of the bf16 row x[0, n), v[0, c) = x[i, i + c) as f32: c = 8
// (16-byte chunks, U loads in flight) when vec, else one element a call.
template <int U, typename F>
__device__ __forceinline__ void visit_chunks(const RowShare& me, const bf16* x, int64_t n, bool vec, F f) {
  float v[8];
  if (!vec) {
    for (int64_t i = me.first; i < n; i += me.stride) {
      v[0] = to_f(x[i]);
      f(i, v, 1);
    }
    return;
  }
  visit_chunks16<U>(me, reinterpret_cast<const uint4*>(x), n / 8, [&](int64_t c, const uint4& raw) {
    const bf16* e = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = to_f(e[j]);
    f(8 * c, v, 8);
  });
}

// f(i, a[i], b[i]) over two f32 rows at once (vec: both vectorize).
template <int U, typename F>
__device__ __forceinline__ void visit_rows(const RowShare& me, const float* a, const float* b, int64_t n, bool vec,
                                           F f) {
  const int64_t stride = me.stride;
  if (!vec) {
    for (int64_t i = me.first; i < n; i += stride) f(i, a[i], b[i]);
    return;
  }
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  const int64_t chunks = n / 4;
  for (int64_t c0 = me.first; c0 < chunks; c0 += U * stride) {
    float4 va[U], vb[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool in = c0 + u * stride < chunks;
      va[u] = in ? a4[c0 + u * stride] : float4{};
      vb[u] = in ? b4[c0 + u * stride] : float4{};
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + u * stride;
      if (c >= chunks) break;
      f(4 * c, va[u].x, vb[u].x), f(4 * c + 1, va[u].y, vb[u].y), f(4 * c + 2, va[u].z, vb[u].z),
          f(4 * c + 3, va[u].w, vb[u].w);
    }
  }
}

}  // namespace loom::kernels::cuda
