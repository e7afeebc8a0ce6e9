// The arithmetic of a row's RMSNorm on the 16-byte path, shared by rms_norm_vec_kernel
// (elementwise.cu) and the decode GEMVs that fold the norm into the reading of their input
// (gemv.cu). Both run 256-thread blocks in which thread t sums the squares of chunks t + 256·i,
// reduced by block_sum, and round alike, so they agree bit for bit; both are written from these
// helpers.
#pragma once
#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda {

constexpr int kNormThreads = 256, kNormChunks = 4;  // rows of at most 8 · 256 · 4 = 8,192 elements
constexpr int kNormWarps = kNormThreads / 32;

__device__ __forceinline__ float add_squares8(float ss, const uint4& chunk) {
  const bf16* e = reinterpret_cast<const bf16*>(&chunk);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float f = to_f(e[j]);
    ss += f * f;
  }
  return ss;
}

// 1 / RMS of a row of `dim` elements whose squares sum to `sum`.
__device__ __forceinline__ float row_rms_inverse(float sum, int64_t dim, float eps) {
  return rsqrtf(sum / static_cast<float>(dim) + eps);
}

// (x · inv) · w rounded to bf16, for the 8 elements of a 16-byte chunk.
__device__ __forceinline__ uint4 rms_normed8(const uint4& x, const uint4& w, float inv) {
  const bf16* xe = reinterpret_cast<const bf16*>(&x);
  const bf16* we = reinterpret_cast<const bf16*>(&w);
  uint4 o;
  bf16* oe = reinterpret_cast<bf16*>(&o);
#pragma unroll
  for (int j = 0; j < 8; ++j) oe[j] = to_bf(to_f(xe[j]) * inv * to_f(we[j]));
  return o;
}

// The row's 1 / RMS (`chunks` = dim / 8 <= kNormThreads · kNormChunks chunks from `row`) by a
// block of kNormThreads threads, every thread getting it: thread t sums the squares of chunks
// t + kNormThreads·i, then block_sum, as rms_norm_vec_kernel does, so the two agree bit for bit.
// Every thread of the block must call it.
__device__ __forceinline__ float block_row_rms_inverse(const uint4* row, int chunks, int64_t dim, float eps) {
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < kNormChunks; ++i) {
    const int c = static_cast<int>(threadIdx.x) + i * kNormThreads;
    if (c >= chunks) break;
    ss = add_squares8(ss, row[c]);
  }
  return row_rms_inverse(block_sum(ss), dim, eps);
}

}  // namespace loom::kernels::cuda
