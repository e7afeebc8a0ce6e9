#include <map>

#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda {

unsigned* completion_counters() {
  struct Buffers {
    std::map<int, unsigned*> by_device;
    ~Buffers() {
      for (auto& [device, p] : by_device) cudaFree(p);
    }
  };
  thread_local Buffers buffers;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  unsigned*& p = buffers.by_device[device];
  if (!p) {
    CUDA_CHECK(cudaMalloc(&p, kCompletionCounters * sizeof(unsigned)));
    CUDA_CHECK(cudaMemset(p, 0, kCompletionCounters * sizeof(unsigned)));
  }
  return p;
}

}  // namespace loom::kernels::cuda
