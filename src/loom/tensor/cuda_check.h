// Checked CUDA / cuBLAS calls: the failing call and the error string go into the exception.
#pragma once
#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime.h>

#include "loom/tensor/error.h"

#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess)                                                               \
      throw ::loom::Error(::loom::str(#call, " failed: ", cudaGetErrorString(err_), " at ", \
                                      __FILE__, ":", __LINE__));                           \
  } while (0)
#endif
