// Multi-head latent attention (DeepSeek-V2's MLA in the absorbed form) on FlashInfer's MLA kernel
// (attention/mla.cuh: FA2-style mma.sync tiles, 64 packed query rows × 64 keys, two cp.async
// stages, a persistent grid with a work list from the host planner and a cooperative grid sync
// before the split-KV merge), behind loom's own interface: only flashinfer/mla.cu includes
// FlashInfer, and nothing here names one of its types.
//
// What is instantiated: bf16, causal (a decode step's one query per sequence attends every key,
// which the causal rule gives too), latent 512 + RoPE 64 (every released DeepSeek-V2/V3 shape),
// the kernel configuration for 221+ KiB of shared memory per SM (H100/H200), sm_90a code.
//
// loom's layouts, used in place: the paged K cache [pages * page_size, 1, 576] holds each token's
// key [k_pe (64) | c (512)], so FlashInfer's kpe is the row's start and its ckv the row + 64, both
// with row stride 576; the value is c, read from the key (the V cache is never read). The query
// [T, heads, 576] is [q_pe | W_UKᵀ q_nope] per head; the output [T, heads, 512] is the latent
// attention output o_lat. The page table rows [S, max_pages] are FlashInfer's kv_indices with
// kv_indptr[s] = s * max_pages.
#pragma once
#include <cstdint>
#include <memory>

#include <cuda_runtime.h>

namespace loom::kernels::cuda {

inline constexpr int64_t kMlaLatent = 512, kMlaRope = 64;

// Whether this build has the FlashInfer MLA kernel and `device` runs it (sm_90, 221 KiB of shared
// memory per SM) for a latent of `latent` + `rope` dims.
bool flashinfer_mla_supports(int device, int64_t latent, int64_t rope);

// One batch as the host sees it: the new tokens of sequence s are rows [token_starts[s],
// token_starts[s + 1]) of the query; kv_lens[s] keys (cached ones and the new ones, whose K must
// already be in the cache) are s's, and its i-th new token attends keys 0 .. kv_lens[s] - n + i.
struct MlaBatch {
  const int32_t* token_starts = nullptr;  // [S + 1]
  const int32_t* kv_lens = nullptr;       // [S]
  int64_t num_seqs = 0;
  int64_t max_pages = 0;  // page table row width
};

// Device operands.
struct MlaArgs {
  const void* q = nullptr;         // bf16 [T, heads, 576]
  const void* k_cache = nullptr;   // bf16 [pages * page_size, 1, 576]
  const int32_t* page_table = nullptr;  // [S, max_pages]
  void* out = nullptr;             // bf16 [T, heads, 512]
  int64_t tokens = 0, heads = 0, page_size = 0;
  float scale = 1.0f;
};

// The schedule buffers of one GPU, allocated once at a fixed size (a CUDA graph captured over
// run() keeps reading them) and never reallocated. Not thread-safe: one per (thread, GPU, use).
class FlashInferMlaWorkspace {
 public:
  // tiles_per_schedule > 0 caps attend()'s schedules at fewer query tiles (of 64 packed rows) than
  // FlashInfer's planner holds, for tests of the split.
  explicit FlashInferMlaWorkspace(int device, int64_t tiles_per_schedule = 0);
  ~FlashInferMlaWorkspace();
  FlashInferMlaWorkspace(const FlashInferMlaWorkspace&) = delete;
  FlashInferMlaWorkspace& operator=(const FlashInferMlaWorkspace&) = delete;

  // Eager use: plans and runs the batch on `s`. A batch bigger than one schedule holds
  // (FlashInfer's planner keeps 16,384 work items) runs as several schedules over consecutive
  // token ranges. The same batch as the last call re-uses its schedule (every layer of a step).
  void attend(const MlaBatch& batch, const MlaArgs& args, cudaStream_t s);

  // Graph use: plan() computes the schedule on the host and, with `upload`, copies it to the
  // device on `s`; run() launches against the device copy. A capture plans without upload (the
  // launch shape is all it needs) and each replay plans with it first. Throws when the batch
  // needs more than one schedule (a decode batch never does). Returns the launch's CTAs per
  // cluster (1 or 2, from the packed query rows per sequence): a replay's plan must match its
  // capture's.
  int64_t plan(const MlaBatch& batch, int64_t heads, bool upload, cudaStream_t s);
  void run(const MlaArgs& args, cudaStream_t s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::kernels::cuda
