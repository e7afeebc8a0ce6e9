#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "loom/kernels/cuda/pdl.cuh"

namespace loom::kernels::cuda {

bool pdl_enabled() {
  // 0: not asked yet, 1: off, 2: on; a device index past the table asks every time.
  static std::array<std::atomic<int>, 64> state{};
  static const bool off = [] {
    const char* v = std::getenv("LOOM_PDL");
    return v != nullptr && std::strcmp(v, "0") == 0;
  }();
  if (off) return false;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const auto ask = [device] {
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    return major >= 9;
  };
  if (device < 0 || device >= static_cast<int>(state.size())) return ask();
  int s = state[device].load(std::memory_order_relaxed);
  if (s == 0) {
    s = ask() ? 2 : 1;
    state[device].store(s, std::memory_order_relaxed);
  }
  return s == 2;
}

}  // namespace loom::kernels::cuda
