#include <cstdlib>
#include <cstring>
#include <map>

#include "loom/kernels/cuda/pdl.cuh"

namespace loom::kernels::cuda {

bool pdl_trigger_first() {
  static const bool on = [] {
    const char* v = std::getenv("LOOM_PDL_TRIGGER_FIRST");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

bool pdl_enabled() {
  static const bool off = [] {
    const char* v = std::getenv("LOOM_PDL");
    return v != nullptr && std::strcmp(v, "0") == 0;
  }();
  if (off) return false;
  thread_local std::map<int, bool> by_device;  // per rank thread, as completion_counters()
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const auto [it, fresh] = by_device.try_emplace(device, false);
  if (fresh) {
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    it->second = major >= 9;
  }
  return it->second;
}

}  // namespace loom::kernels::cuda
