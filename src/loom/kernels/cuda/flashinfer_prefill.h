// Causal prefill/extend attention on FlashInfer's Hopper kernels (FlashAttention-3: wgmma, TMA
// for Q, warp-specialized producer/consumer), behind loom's own interface. FlashInfer's C++ API is
// internal and changes between releases: only flashinfer/prefill_sm90.cu includes it (one pinned
// version, see scripts/setup.sh), and nothing here names a FlashInfer type.
//
// What is instantiated: bf16 Q/K/V/O, causal, head_dim 128 and 64 (K and V dims equal), compiled
// for sm_90a only. Any other case (another GPU, dtype or head size, a sliding window) stays on
// loom's own kernel (attention.cu); the caller asks flashinfer_prefill_supports() first.
//
// loom's paged cache already is FlashInfer's NHD layout with separate K and V tensors: K/V
// [pages * page_size, hk, d] is (num_pages, page_size, hk, d) with page stride page_size * hk * d.
// Any page size works (FlashInfer divides by it with a fast divmod). The page table rows
// [S, max_pages] are used in place as FlashInfer's kv_indices with kv_indptr[s] = s * max_pages,
// so nothing is copied or compacted per step.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <cuda_runtime.h>

#include "loom/kernels/cuda/kernels.h"

namespace loom::kernels::cuda {

// Whether this build has the FlashInfer path (CMake found the headers; see LOOM_FLASHINFER_DIR).
bool flashinfer_prefill_built();
// Whether the FlashInfer path takes head_dim `d` with `hq` query and `hk` KV heads on `device`:
// built, the device is sm_90 (Hopper), d is instantiated (128 or 64), hq % hk == 0.
bool flashinfer_prefill_supports(int device, int64_t hq, int64_t hk, int64_t d);

// The schedule of one batch and the buffers it lives in. plan() does the host work (FlashInfer's
// PrefillSM90Plan: split every sequence's query tiles over the SMs, longest first) and one async
// copy from pinned host memory into a device buffer; run() launches the kernel against that
// schedule. Every layer of a step runs on the same plan: plan() with the same batch description
// is a no-op, so calling it before each layer's run() costs one comparison.
//
// The buffers are owned here and kept across calls (grown, never shrunk). The pinned buffer is
// not rewritten until the previous plan's copy has finished (an event), and a new schedule is
// copied in stream order after every earlier run() on the stream of the last call.
// Not for CUDA-graph capture (plan() copies from host memory); prefill runs eagerly in loom.
// One workspace per (thread, device); not thread-safe.
class FlashInferPrefillWorkspace {
 public:
  FlashInferPrefillWorkspace();
  ~FlashInferPrefillWorkspace();
  FlashInferPrefillWorkspace(const FlashInferPrefillWorkspace&) = delete;
  FlashInferPrefillWorkspace& operator=(const FlashInferPrefillWorkspace&) = delete;

  // Host arrays of the step: token_starts_h [S + 1] (new tokens of sequence s are
  // [token_starts_h[s], token_starts_h[s + 1]) of q), start_pos_h [S] (tokens already cached,
  // which every new token also attends). Returns false (nothing planned) when the batch is outside
  // what the instantiated kernel covers; the caller then uses attention().
  bool plan(const int32_t* token_starts_h, const int32_t* start_pos_h, int64_t num_seqs, int64_t max_pages,
            int64_t page_size, int64_t hq, int64_t hk, int64_t d, cudaStream_t s);
  // The same for run_ragged(): a batch with no cached keys (every start_pos 0), whose keys are the
  // step's own k/v rows.
  bool plan_ragged(const int32_t* token_starts_h, int64_t num_seqs, int64_t hq, int64_t hk, int64_t d,
                   cudaStream_t s);

  // out [T, hq, d] = causal softmax(scale * q kᵀ) v of q [T, hq, d] (bf16) over each sequence's
  // cached keys 0 .. start_pos + i (query i of the sequence), read through kv.page_table.
  // kv must describe the batch given to the last plan() (kv.token_starts/start_pos are not read:
  // the plan carries them). K/V of the new tokens must already be written (write_kv).
  void run(const PagedKvArgs& kv, const void* q, void* out, int64_t tokens, int64_t hq, float scale,
           cudaStream_t s);
  // The same attention with keys and values read from k/v [T, hk, d] (bf16, contiguous) instead of
  // the cache: FlashInfer's ragged kernel, which loads K/V tiles by TMA (the paged kernel's
  // producer warps gather them row by row). Needs a plan_ragged() of the batch.
  void run_ragged(const void* q, const void* k, const void* v, void* out, int64_t tokens, int64_t hq, int64_t hk,
                  float scale, cudaStream_t s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::kernels::cuda
