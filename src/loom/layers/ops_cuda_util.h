// Helpers shared by the CUDA op files (ops_cuda.cc, ops_cuda_parallel.cc): argument checks, the
// stream to launch on, and the --profile-ops scope. Internal to layers/.
#pragma once
#include <cuda_runtime.h>

#include "loom/tensor/tensor.h"

namespace loom::layers::ops::cuda {

// Sets the tensor's GPU current and returns the thread's stream there.
cudaStream_t stream_for(const Tensor& t);
void check_bf16(const Tensor& t, const char* op, const char* what);
void check_i32(const Tensor& t, const char* op, const char* what);

// While --profile-ops is on, events around the op's work on its stream.
class OpScope {
 public:
  OpScope(const char* op, const Tensor& t);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  const char* op_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace loom::layers::ops::cuda
