// Checked CUDA / cuBLAS calls: the failing call and the error string go into the exception.
#pragma once
#ifdef LOOM_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "loom/tensor/error.h"

#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess)                                                               \
      throw ::loom::Error(::loom::str(#call, " failed: ", cudaGetErrorString(err_), " at ", \
                                      __FILE__, ":", __LINE__));                           \
  } while (0)

// After a kernel launch: a bad configuration shows up here, not at some later call.
#define CUDA_CHECK_LAUNCH(what)                                                               \
  do {                                                                                        \
    cudaError_t err_ = cudaGetLastError();                                                    \
    if (err_ != cudaSuccess)                                                                  \
      throw ::loom::Error(::loom::str("kernel launch ", what, " failed: ", cudaGetErrorString(err_), \
                                      " at ", __FILE__, ":", __LINE__));                      \
  } while (0)

#define CUBLAS_CHECK(call)                                                                       \
  do {                                                                                           \
    cublasStatus_t st_ = (call);                                                                 \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                            \
      throw ::loom::Error(::loom::str(#call, " failed: ", cublasGetStatusString(st_), " at ",    \
                                      __FILE__, ":", __LINE__));                                 \
  } while (0)
#endif
