// Helpers shared by the .cu files: bf16 conversion, warp/block reductions, launch checks.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "loom/tensor/cuda_check.h"

namespace loom::kernels::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ bf16 to_bf(float v) { return __float2bfloat16(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // part[] may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < warps ? part[lane] : 0.0f;
  return warp_sum(v);
}

// The last index i in [0, n) with starts[i] <= t (starts ascending, starts[0] <= t): which
// sequence holds token t, or which expert's rows hold row t.
__device__ __forceinline__ int last_start_at_most(const int32_t* starts, int64_t n, int64_t t) {
  int lo = 0, hi = static_cast<int>(n) - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (starts[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Zeroed counters for "the last block to finish does the epilogue" launches (the decode router's
// top-k after its GEMV): each such kernel counts its blocks in and the last one resets its counter,
// so they are zero between launches. Per host thread and device (rank threads sharing a
// GPU run on their own streams at once); kernels of one stream run one after another. Allocated by
// the first call, which must not be inside a graph capture (the graph runner runs a step eagerly
// before capturing it).
constexpr int64_t kCompletionCounters = 1 << 16;
unsigned* completion_counters();

// cp.async: 16 bytes global -> shared without registers (zeros when !valid).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Lets `kernel` launch with up to `bytes` of dynamic shared memory (over 48 KB) on the current
// device; once per device and kernel (kernel_attributes.cu).
void allow_dynamic_smem(const void* kernel, size_t bytes);

// The current device's SM count (launch shapes that fill whole waves; kernel_attributes.cu).
int sm_count();

inline unsigned grid_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 1048576 ? 1048576 : b));
}

}  // namespace loom::kernels::cuda
