// Biases and gpt-oss's expert activation: a bias add for the dense projections, and the two
// epilogues of the grouped expert GEMMs when the experts carry biases (rows in the plan's expert
// order, so each row finds its expert from the plan's offsets).
#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"

namespace loom::kernels::cuda {
namespace {

__global__ void add_bias_kernel(bf16* y, const bf16* bias, int64_t m, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m * n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = to_bf(to_f(y[i]) + to_f(bias[i % n]));
}

// The local expert whose sorted rows [offsets[e], offsets[e + 1]) hold row r; -1 past the last.
__device__ __forceinline__ int expert_of_row(const int32_t* offsets, int64_t experts, int64_t r) {
  return r < offsets[experts] ? last_start_at_most(offsets, experts, r) : -1;
}

__global__ void moe_bias_activation_kernel(const bf16* gu, const bf16* bias, const int32_t* offsets, int64_t experts,
                                           int64_t inter, float alpha, float limit, bf16* act) {
  const int64_t r = blockIdx.x;
  const int e = expert_of_row(offsets, experts, r);
  if (e < 0) return;
  const bf16* row = gu + r * 2 * inter;
  const bf16* b = bias ? bias + e * 2 * inter : nullptr;
  for (int64_t i = threadIdx.x; i < inter; i += blockDim.x) {
    float g = to_f(row[i]), u = to_f(row[inter + i]);
    if (b) g += to_f(b[i]), u += to_f(b[inter + i]);
    float out;
    if (limit > 0) {
      g = fminf(g, limit);
      u = fminf(fmaxf(u, -limit), limit);
      out = (u + 1.0f) * g / (1.0f + __expf(-alpha * g));
    } else {
      out = g / (1.0f + __expf(-g)) * u;
    }
    act[r * inter + i] = to_bf(out);
  }
}

__global__ void moe_add_expert_bias_kernel(bf16* y, const bf16* bias, const float* scale, const int32_t* offsets,
                                           int64_t experts, int64_t h) {
  const int64_t r = blockIdx.x;
  const int e = expert_of_row(offsets, experts, r);
  if (e < 0) return;
  const float w = scale ? scale[r] : 1.0f;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x)
    y[r * h + c] = to_bf(to_f(y[r * h + c]) + w * to_f(bias[e * h + c]));
}

}  // namespace

void add_bias(void* y, const void* bias, int64_t m, int64_t n, cudaStream_t s) {
  if (m * n == 0) return;
  add_bias_kernel<<<grid_for(m * n, 256), 256, 0, s>>>(static_cast<bf16*>(y), static_cast<const bf16*>(bias), m, n);
  CUDA_CHECK_LAUNCH("add_bias");
}

void moe_bias_activation(const void* gate_up, const void* gate_up_bias, const int32_t* offsets, int64_t experts,
                         int64_t rows, int64_t inter, float alpha, float limit, void* act, cudaStream_t s) {
  if (rows == 0) return;
  moe_bias_activation_kernel<<<static_cast<unsigned>(rows), 128, 0, s>>>(
      static_cast<const bf16*>(gate_up), static_cast<const bf16*>(gate_up_bias), offsets, experts, inter, alpha, limit,
      static_cast<bf16*>(act));
  CUDA_CHECK_LAUNCH("moe_bias_activation");
}

void moe_add_expert_bias(void* y, const void* bias, const float* row_scale, const int32_t* offsets, int64_t experts,
                         int64_t rows, int64_t h, cudaStream_t s) {
  if (rows == 0) return;
  moe_add_expert_bias_kernel<<<static_cast<unsigned>(rows), 128, 0, s>>>(
      static_cast<bf16*>(y), static_cast<const bf16*>(bias), row_scale, offsets, experts, h);
  CUDA_CHECK_LAUNCH("moe_add_expert_bias");
}

}  // namespace loom::kernels::cuda
