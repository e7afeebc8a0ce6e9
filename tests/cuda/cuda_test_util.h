// Helpers of the CUDA tests: bf16-rounded random inputs shared by the CPU reference and the GPU,
// poisoned device outputs, and the error metric. Speed is never asserted here.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "loom/tensor/cuda_stream.h"
#include "loom/tensor/tensor.h"

namespace loom::testing {

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!::loom::testing::have_gpu()) GTEST_SKIP() << "no GPU"

// Sets an environment variable (null: unsets it) while alive, then restores what was there; for the
// switches loom reads at every call (LOOM_ATTENTION, LOOM_MOE_GEMM, ...).
class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~EnvGuard() { had_ ? setenv(name_.c_str(), old_.c_str(), 1) : unsetenv(name_.c_str()); }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

// f32 host tensor of uniform values in [-scale, scale), rounded to bf16 so that the GPU (bf16)
// and the CPU reference (f32) see the same numbers.
inline Tensor rand_host(const Shape& shape, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-scale, scale);
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = bf16_to_f32(f32_to_bf16(u(rng)));
  return t;
}

inline Tensor to_gpu_bf16(const Tensor& host_f32) { return host_f32.to(DType::bf16).to(Device::cuda(0)); }

// A device tensor whose every byte is 0xFF: NaN as bf16/f32, -1 as i32, so unwritten elements show.
inline Tensor poisoned(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, Device::cuda(0));
  if (t.nbytes()) EXPECT_EQ(cudaMemset(t.data_ptr(), 0xFF, t.nbytes()), cudaSuccess);
  return t;
}

inline std::vector<float> host_values(const Tensor& t) {
  loom::cuda::synchronize();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  return t.to_float_vector();
}

// ‖out − ref‖₂ / ‖ref‖₂; infinity when any output is NaN/inf (an unwritten or broken element).
inline double rel_error(const std::vector<float>& out, const std::vector<float>& ref) {
  EXPECT_EQ(out.size(), ref.size());
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (static_cast<double>(out[i]) - ref[i]) * (static_cast<double>(out[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

// The gap between a logits row's two largest values, and the row's scale (max |value|): greedy
// decoding in bf16 may pick either of two tokens whose gap is within the rounding error.
struct Margin {
  double margin, scale;
};
inline Margin top2_margin(const std::vector<float>& row) {
  std::vector<float> r = row;
  std::partial_sort(r.begin(), r.begin() + 2, r.end(), std::greater<float>());
  double scale = 0;
  for (float v : row) scale = std::max(scale, static_cast<double>(std::abs(v)));
  return {static_cast<double>(r[0]) - r[1], scale};
}

// bf16 operands with f32 accumulation land between 1e-3 and 1e-2 of relative L2 error.
constexpr double kBf16Kernel = 1e-2;

}  // namespace loom::testing
