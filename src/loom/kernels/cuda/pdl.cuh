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
//
// On unless LOOM_PDL_TRIGGER_FIRST=0 (pdl_trigger_first(); with the GEMVs' preload, bs-1 decode
// 3.087 -> 2.974 ms on an H200, bench/NOTES.md): the small kernels between two weight-streaming
// GEMVs (the RMSNorm, the decode attention, its split merge) and the GEMVs themselves allow
// dependents *before* they wait, so the next kernel's blocks are scheduled (and request their
// weights) while the one before this is still running: a GEMV then sees the kernel two or three launches back, not only the one before. Still
// ordered: a kernel's wait returns once the kernel before it has completed, and that kernel
// completed only after its own wait returned, so every earlier kernel has completed too; what is
// read before a wait is still only what no kernel of the step writes. The trigger fires once
// every block of the grid has issued it, so every block of a running kernel is resident before a
// later kernel's blocks take SM slots: no kernel waits on one that cannot be scheduled. The router
// and the experts' decode kernels trigger after their wait (triggered first too, bs-1 decode did
// not change: bench/NOTES.md).

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

// Both, the dependents first when `trigger_first` (pdl_trigger_first(), passed by the launcher).
__device__ __forceinline__ void wait_and_allow_dependents(bool trigger_first) {
  if (trigger_first) allow_dependents();
  grid_dependency_wait();
  if (!trigger_first) allow_dependents();
}

// Whether launches on the current device get the attribute: compute capability 9.0 or later and
// LOOM_PDL not "0". Cached per device.
bool pdl_enabled();

// Unless LOOM_PDL_TRIGGER_FIRST=0 (above). Read once.
bool pdl_trigger_first();

// A measurement aid: 2 when LOOM_DECODE_EXTRA names `kernel` ("norm", "attention", "merge",
// "router", "qkv", "o", "gate_up", "down"), else 1. Those launch sites launch their kernel that many times; each repeat
// writes what the first wrote, so results do not change, and the step's growth is what one such
// kernel costs inside a graph under PDL (what folding it away could win at most).
int launches_of(const char* kernel);

// `cluster` (not 1 x 1 x 1): the grid's blocks form thread-block clusters of that shape (Hopper;
// the caller checks they can be scheduled).
template <typename... Params, typename... Args>
void launch_pdl_cluster(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, dim3 cluster,
                        Args&&... args) {
  cudaLaunchAttribute attrs[2]{};
  unsigned n = 0;
  if (pdl_enabled()) {
    attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attrs[n].id = cudaLaunchAttributeClusterDimension;
    attrs[n].val.clusterDim.x = cluster.x;
    attrs[n].val.clusterDim.y = cluster.y;
    attrs[n++].val.clusterDim.z = cluster.z;
  }
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attrs;
  cfg.numAttrs = n;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  launch_pdl_cluster(kernel, grid, block, smem, s, dim3(1, 1, 1), std::forward<Args>(args)...);
}

}  // namespace loom::kernels::cuda
