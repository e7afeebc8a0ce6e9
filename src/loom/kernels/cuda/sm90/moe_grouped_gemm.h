// The routed experts of prefill-sized batches on Hopper: CUTLASS's sm90 grouped GEMM (wgmma, TMA,
// warp-specialized, persistent), one group per local expert, behind loom's own interface. Built
// for sm_90a only (its own target, see src/loom/CMakeLists.txt); the CUTLASS tree is the one in
// the flashinfer-python wheel. Everything is read on the device (per-expert row counts come from
// moe_plan's offsets), so a call never waits for the host and can be captured in a CUDA graph.
//
// Sequence (ops_cuda.cc, moe_experts): moe_plan → moe_sm90_prepare (per-expert GEMM arguments, x
// rows gathered in expert order) → moe_sm90_gate_up → silu_and_mul → moe_sm90_down →
// moe_combine_weighted.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace loom::kernels::cuda {

// Whether this build has the CUTLASS kernels and `device` runs sm_90a code (compute capability 9.0).
bool moe_sm90_available(int device);
// Whether the shapes suit the kernels: hidden and inter multiples of 8 (16-byte rows for TMA) and
// 16-byte aligned bases.
bool moe_sm90_applies(int64_t hidden, int64_t inter, const void* x, const void* w_gate_up, const void* w_down);
// Bytes of device scratch the calls below need (both GEMMs' argument arrays + CUTLASS's workspace).
size_t moe_sm90_workspace_bytes(int64_t local_experts, int device);

struct MoeSm90Args {
  const void* x;               // bf16 [t, hidden]
  const void* w_gate_up;       // bf16 [E, 2 * inter, hidden]
  const void* w_down;          // bf16 [E, hidden, inter]
  const int32_t* offsets;      // moe_plan: expert e's rows are [offsets[e], offsets[e + 1])
  const int32_t* slot_pos;     // moe_plan: the sorted row of each (token, choice) slot, -1 if not local
  void* a;                     // bf16 [slots, hidden]: x in expert order, then the down GEMM's output
  void* gate_up;               // bf16 [slots, 2 * inter]
  void* act;                   // bf16 [slots, inter]
  void* workspace;             // moe_sm90_workspace_bytes(local_experts, device)
  size_t workspace_bytes;
  int64_t slots, hidden, inter, local_experts;
  int64_t top_k;               // slots = tokens x top_k (at most 32)
};

// Writes both GEMMs' per-expert problem sizes, pointers and strides, and copies each token's row
// of x to its local slots' rows, a[slot_pos[t·k + j]] = x[t] (rows past offsets[E] are left alone).
void moe_sm90_prepare(const MoeSm90Args& a, cudaStream_t s);
// gate_up[rows of e] = a[rows of e] · w_gate_up[e]ᵀ  (bf16 out, f32 accumulation).
void moe_sm90_gate_up(const MoeSm90Args& a, cudaStream_t s);
// a[rows of e] = act[rows of e] · w_down[e]ᵀ  (overwrites the gathered x, no longer needed).
void moe_sm90_down(const MoeSm90Args& a, cudaStream_t s);
// out[t] = Σ_j weights[t*k + j] · y[slot_pos[t*k + j]] over local slots (slot_pos >= 0), 0 if none;
// y bf16 [*, h], weights f32 [t, k], out bf16 [t, h]; f32 sums.
void moe_combine_weighted(const void* y, const int32_t* slot_pos, const float* weights, int64_t t, int64_t k,
                          int64_t h, void* out, cudaStream_t s);

}  // namespace loom::kernels::cuda
