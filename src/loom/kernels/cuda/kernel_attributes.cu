#include <set>
#include <utility>

#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda {

void allow_dynamic_smem(const void* kernel, size_t bytes) {
  // A function's attributes belong to one device's context: ranks on several GPUs each set them
  // (per rank thread, as completion_counters(); setting one twice is harmless).
  thread_local std::set<std::pair<int, const void*>> done;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (done.count({device, kernel})) return;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  done.insert({device, kernel});
}

int sm_count() {
  int device = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

}  // namespace loom::kernels::cuda
