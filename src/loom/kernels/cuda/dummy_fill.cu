// `--load-format dummy` on the GPU: io/dummy_weights.cc's generator, bit for bit, so a 60 GB
// model is made in well under a second instead of on the host and copied over.
#include <cuda_fp16.h>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"

namespace loom::kernels::cuda {
namespace {

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <typename T>
__device__ __forceinline__ T store_as(float v);
template <>
__device__ __forceinline__ float store_as<float>(float v) { return v; }
template <>
__device__ __forceinline__ bf16 store_as<bf16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half store_as<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__global__ void dummy_fill_kernel(T* out, int64_t n, int64_t run, int64_t src_stride, int64_t first, uint64_t key,
                                  bool norm, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t full = static_cast<uint64_t>((i / run) * src_stride + first + i % run);
    const float u = static_cast<float>(splitmix64(key + full) >> 40) * 0x1p-24f;  // [0, 1)
    // _rn intrinsics: no fused multiply-add, so the rounding is the host's.
    const float v = norm ? __fadd_rn(1.0f, __fmul_rn(0.1f, __fsub_rn(u, 0.5f)))
                         : __fmul_rn(scale, __fsub_rn(__fmul_rn(2.0f, u), 1.0f));
    out[i] = store_as<T>(v);
  }
}

}  // namespace

void dummy_fill(void* out, FillType type, int64_t n, int64_t run, int64_t src_stride, int64_t first, uint64_t key,
                bool norm, float scale, cudaStream_t s) {
  if (n == 0) return;
  const unsigned grid = grid_for(n, 256) > 132 * 32 ? 132 * 32 : grid_for(n, 256);
  switch (type) {
    case FillType::f32:
      dummy_fill_kernel<<<grid, 256, 0, s>>>(static_cast<float*>(out), n, run, src_stride, first, key, norm, scale);
      break;
    case FillType::bf16:
      dummy_fill_kernel<<<grid, 256, 0, s>>>(static_cast<bf16*>(out), n, run, src_stride, first, key, norm, scale);
      break;
    case FillType::f16:
      dummy_fill_kernel<<<grid, 256, 0, s>>>(static_cast<__half*>(out), n, run, src_stride, first, key, norm, scale);
      break;
  }
  CUDA_CHECK_LAUNCH("dummy_fill");
}

}  // namespace loom::kernels::cuda
