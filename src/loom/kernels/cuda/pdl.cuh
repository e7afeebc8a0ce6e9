// Programmatic dependent launch (Hopper and later): a kernel launched with launch_pdl() may be
// scheduled while the kernel before it in the stream is still running, so its launch, its blocks'
// start and whatever it does first hide behind that kernel's tail. A decode step is ~10 short
// kernels a layer, each latency-bound (bench/NOTES.md), so this is where a small batch's time goes.
//
// The contract every kernel launched this way keeps:
//   - before grid_dependency_wait() it reads only what no kernel of the step writes: weights, and
//     the step's metadata uploaded before it (positions, page tables, sequence starts), and the KV
//     cache of earlier steps; it writes nothing;
//   - every block calls grid_dependency_wait() (which returns once the previous kernel has finished
//     and its writes are visible), then allow_dependents() to let the next kernel be scheduled.
// Before Hopper, or in a launch without the attribute, both calls return at once; LOOM_PDL=0
// launches without it.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "loom/tensor/cuda_check.h"

namespace loom::kernels::cuda {

__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Both, in the order the contract wants.
__device__ __forceinline__ void wait_then_allow_dependents() {
  grid_dependency_wait();
  allow_dependents();
}

// Pulls [p, p + bytes) into L2 without waiting or using registers (sm_90 bulk prefetch; bytes a
// multiple of 16, p 16-byte aligned). Elsewhere a no-op.
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (bytes > 0) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// Whether launches on the current device get the attribute: compute capability 9.0 or later and
// LOOM_PDL not "0". Cached per device.
bool pdl_enabled();

template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace loom::kernels::cuda
