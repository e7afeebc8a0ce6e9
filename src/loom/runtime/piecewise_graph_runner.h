// Prefill and extend steps through piecewise CUDA graphs. Per token-count bucket, the forward up
// to the final norm is captured in pieces that end at each attention (layers/graph_split.h): the
// attention of a step depends on its sequences (FlashInfer's schedule, the KV it writes), the rest
// only on its token count. A step pads its tokens to the next bucket (padding: token 0 at position
// 0; attention never sees it, so it writes no KV and reads none, and the MoE routes it to no
// expert: ForwardContext::valid_tokens), uploads its inputs from one pinned staging buffer,
// replays piece 0, runs attention 0 eagerly on the real batch, replays piece 1, ...,
// and runs the LM head eagerly over its logits rows. What it saves is the host's per-op work (a
// few microseconds per op, ~700 ops a step on a 48-layer MoE) and the gaps between kernels: 2-4 %
// on the H200 with Qwen3-30B-A3B, where even small steps are GPU-bound (bench/NOTES.md).
//
// The pieces never touch the KV cache, so the runner captures them before the KV pool is sized,
// running the capture's attention over a scratch pool of its own: their memory is then counted
// against the pool's budget. Decode graphs may share the graph memory pool (steps replay one at a
// time on one stream).
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "loom/layers/graph_split.h"
#include "loom/model/causal_lm.h"
#include "loom/model/forward_batch.h"
#include "loom/tensor/allocator.h"

#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace loom::runtime {

// The token counts captured: every 8 up to 64, then four steps per doubling (a padded step does at
// most a quarter more work than it needs), up to max_tokens (always included).
std::vector<int64_t> piecewise_graph_buckets(int64_t max_tokens);

#ifdef LOOM_HAVE_CUDA
class PiecewiseGraphRunner final : layers::GraphSplitter {
 public:
  // Captures every bucket up to max_tokens; `pool` holds the pieces' intermediates. `progress`
  // (may be empty) hears of each bucket captured.
  PiecewiseGraphRunner(model::CausalLM& model, int64_t max_tokens, int64_t page_size,
                       std::shared_ptr<GraphMemoryPool> pool, const model::ProgressFn& progress = {});
  ~PiecewiseGraphRunner() override;
  PiecewiseGraphRunner(const PiecewiseGraphRunner&) = delete;
  PiecewiseGraphRunner& operator=(const PiecewiseGraphRunner&) = delete;

  // A step of 1..max_tokens tokens that is not decode-only (decode graphs take those) and whose
  // tokens are all on the host (no placeholders).
  bool can_run(const model::ForwardBatch& batch) const;
  // Device logits [batch.num_logit_rows(), vocab] in the model's dtype, K/V written into `kv`. Runs
  // on the calling thread's current stream and returns without waiting for the GPU.
  Tensor replay(const model::ForwardBatch& batch, const KvBuffers& kv);
  const std::vector<int64_t>& buckets() const { return buckets_; }

 private:
  struct Graph {
    std::vector<cudaGraphExec_t> pieces;  // null where a piece holds no work
    std::vector<EagerOp> ops;             // ops[i] runs after pieces[i]
    Tensor hidden;                        // the last piece's output [bucket, hidden]
  };
  struct Staging {
    int32_t* host = nullptr;  // pinned
    int64_t capacity = 0;     // i32 elements
    cudaEvent_t uploaded = nullptr;
  };

  void split(const char* op, EagerOp run, const layers::ForwardContext& capture_ctx) override;
  void capture(int64_t bucket, const KvBuffers& scratch);
  void begin_piece();
  void end_piece();
  // The step's context: host fields, ids and positions in the static inputs, the rest in a
  // per-step device buffer, all from one pinned staging buffer, asynchronously.
  layers::ForwardContext stage(const model::ForwardBatch& batch, const KvBuffers& kv, int64_t bucket, cudaStream_t s);

  model::CausalLM& model_;
  int64_t max_tokens_;
  std::vector<int64_t> buckets_;
  cudaStream_t stream_ = nullptr;  // the capture's: the constructing thread's current stream
  Tensor inputs_;  // i32 [2 · max_tokens + 1]: token ids, positions, the token count (the pieces read them here)
  std::shared_ptr<GraphMemoryPool> pool_;
  Staging staging_[2];
  int next_staging_ = 0;
  Graph* capturing_ = nullptr;
  std::map<int64_t, Graph> graphs_;
};
#endif

}  // namespace loom::runtime
