#include <cstdlib>
#include <map>
#include <string>

#include "loom/kernels/cuda/pdl.cuh"
#include "loom/tensor/env.h"

namespace loom::kernels::cuda {

// On by default: with the GEMVs' preload, bs-1 decode 3.087 -> 2.974 ms (bench/NOTES.md);
// LOOM_PDL_TRIGGER_FIRST=0 restores the trigger after the wait.
bool pdl_trigger_first() {
  static const bool on = !env_is("LOOM_PDL_TRIGGER_FIRST", "0");
  return on;
}

int launches_of(const char* kernel) {
  static const std::string extra = [] {  // read once; compared without building a string a launch
    const char* v = std::getenv("LOOM_DECODE_EXTRA");
    return std::string(v ? v : "");
  }();
  return extra == kernel ? 2 : 1;
}

bool pdl_enabled() {
  static const bool off = env_is("LOOM_PDL", "0");
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
