// Decode steps through CUDA graphs: one graph per batch-size bucket, captured once over static
// input buffers; a step pads its batch to the next bucket (padding sequences read and write
// only the KV pool's scratch page 0) and replays. Every communicator the step may use is
// prepared through the GraphRegistry before capture, and capture runs under GraphCaptureGuard,
// so an unregistered one fails loudly.
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "loom/layers/ops_cuda.h"
#include "loom/model/causal_lm.h"
#include "loom/model/forward_batch.h"
#include "loom/parallel/graph_registry.h"
#include "loom/tensor/allocator.h"

#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace loom::runtime {

// 1, 2, 4, 8, then every 8 up to max_bs (max_bs itself always included).
std::vector<int64_t> cuda_graph_buckets(int64_t max_bs);

// A rank of an attention-DP run (--enable-dp-attention): its replica runs sequences
// replica, replica + dp, ... of each batch (model/rank_context.cc's split). Every replica pads its
// share to the same bucket, so the collectives see equal counts and one graph per bucket serves
// any batch; the gathered logits rows are put back in batch order by a static index.
struct DataParallelDecode {
  int dp = 1;       // attention-DP replicas (1: every rank runs the whole batch)
  int replica = 0;  // this rank's
  int tp = 1;       // ranks of the TP group (the length of the per-rank count vectors)
};

#ifdef LOOM_HAVE_CUDA
class CudaGraphRunner {
 public:
  // max_pages: the widest page table a step may bring (the graphs' static page-table width).
  // max_bs counts one replica's sequences (a batch may then have up to dp x max_bs).
  // `progress` (may be empty) hears of each batch size captured. `pool` (new when null) holds the
  // graphs' intermediates; graphs replayed one at a time on one stream may share it.
  CudaGraphRunner(model::CausalLM& model, const KvBuffers& kv, int64_t max_bs, int64_t max_pages,
                  parallel::GraphRegistry* registry, DataParallelDecode dp = {},
                  const model::ProgressFn& progress = {}, std::shared_ptr<GraphMemoryPool> pool = nullptr);
  ~CudaGraphRunner();
  CudaGraphRunner(const CudaGraphRunner&) = delete;
  CudaGraphRunner& operator=(const CudaGraphRunner&) = delete;

  // Decode-only (one new token per sequence, last-token logits), at most max_bs sequences, each
  // page table within max_pages.
  bool can_run(const model::ForwardBatch& batch) const;
  // Device logits [batch size, vocab] in the model's dtype: a view of the graph's output buffer,
  // valid until the next replay. With batch.previous_ids (attention DP off), placeholder tokens
  // are resolved on the device before the replay. Runs on the calling thread's current stream
  // (its reader's order: the engine steps on a thread of its own) and returns without waiting.
  Tensor replay(const model::ForwardBatch& batch);
  const std::vector<int64_t>& buckets() const { return buckets_; }

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    Tensor logits;
    std::vector<layers::ops::cuda::ReplayPrep> preps;  // host work before each replay (ops_cuda.h)
  };
  layers::ForwardContext context(int64_t bs) const;
  void fill_inputs(const model::ForwardBatch& batch, int64_t bs, cudaStream_t s);  // host staging -> device, async
  layers::ForwardContext staged_batch(int64_t bs) const;           // the host fields of the staged batch
  void capture(int64_t bs, parallel::GraphRegistry* registry);

  model::CausalLM& model_;
  const KvBuffers& kv_;
  int64_t max_bs_, max_pages_;
  DataParallelDecode dp_;
  std::vector<int64_t> buckets_;
  cudaStream_t stream_ = nullptr;  // the capture's: the constructing thread's current stream
  // One i32 buffer: ids | positions | token_starts | start_pos | logit_rows | page_table |
  // logit_order (attention DP).
  Tensor meta_;
  // Pinned staging of the same layout, two of them: a step is staged while the one before may
  // still be uploading from the other (the engine queues decode steps back to back). uploaded_[j]
  // marks the end of the last copy out of host_meta_[j]; staged_ is the one filled last.
  int32_t* host_meta_[2] = {nullptr, nullptr};
  cudaEvent_t uploaded_[2] = {nullptr, nullptr};
  int next_staging_ = 0;
  const int32_t* staged_ = nullptr;
  int64_t meta_len_ = 0;
  std::shared_ptr<GraphMemoryPool> pool_;
  std::map<int64_t, Graph> graphs_;
};
#endif

}  // namespace loom::runtime
