// A rank's model and its KV pool: loads the checkpoint, sizes the pool, runs forward steps.
// The engine talks to a Runner; a parallel runner (several ranks) implements the same interface.
#pragma once
#include <memory>
#include <string>

#include "loom/cache/kv_pool.h"
#include "loom/model/causal_lm.h"
#include "loom/parallel/parallel_config.h"

namespace loom::runtime {

// KV pool capacity on the CPU when --max-total-tokens is not given.
inline constexpr int64_t kDefaultCpuKvTokens = 65536;
// --piecewise-cuda-graph-max-tokens' default (bench/NOTES.md: where the graphs stop paying).
inline constexpr int64_t kDefaultPiecewiseMaxTokens = 2048;

struct RunnerOptions {
  std::string model_path;
  Device device = Device::cpu();
  std::string load_format = "auto";  // auto (safetensors) | dummy
  int64_t page_size = 16;
  int64_t max_total_tokens = 0;      // KV pool capacity in tokens; 0 = from memory
  double mem_fraction_static = 0.85; // CUDA: fraction of GPU memory for weights + KV pool
  bool disable_cuda_graph = false;  // decode and piecewise prefill graphs both
  int64_t cuda_graph_max_bs = 160;
  // Prefill/extend steps of up to this many tokens replay piecewise CUDA graphs (one GPU).
  bool disable_piecewise_cuda_graph = false;
  int64_t piecewise_cuda_graph_max_tokens = kDefaultPiecewiseMaxTokens;
  // More than one rank: ranks run as threads of this process; see runtime/parallel_runner.h.
  parallel::ParallelConfig parallel;
  std::string moe_dispatch = "auto";  // auto | gather | all_to_all (layers/moe.h)
  // CUDA ranks: nccl (one GPU per rank), device-copy (every rank on --device's GPU, collectives as
  // device copies; no CUDA graphs), or auto (nccl when there are enough GPUs, else an error).
  std::string dist_backend = "auto";
  // Start-up progress (weights per layer, CUDA graphs per batch size), from rank 0; may be empty.
  model::ProgressFn progress;
};

class Runner {
 public:
  virtual ~Runner() = default;
  virtual const io::ModelConfig& config() const = 0;
  virtual cache::KvPool& kv_pool() = 0;
  // Logits f32 [batch.num_logit_rows(), vocab] on the host, rows in batch order.
  virtual Tensor forward(const model::ForwardBatch& batch) = 0;
  // The same step with rank 0's logits left on its device, in the model's dtype, valid until the
  // next step (benchmarks: no host copy), and readable from the calling thread's stream (a
  // parallel runner waits for rank 0's stream). A decode step replays a CUDA graph unless !allow_graph.
  // Runners without a device answer with forward()'s host logits.
  virtual Tensor forward_device_logits(const model::ForwardBatch& batch, bool allow_graph = true) {
    (void)allow_graph;
    return forward(batch);
  }
  // Whether forward_device_logits() accepts this batch with placeholder tokens resolved on the
  // device from batch.previous_ids (model/forward_batch.h): a single GPU's decode graph can.
  virtual bool takes_previous_ids(const model::ForwardBatch& batch) const {
    (void)batch;
    return false;
  }
  // Why the runner can no longer run steps ("" while it can). A parallel runner stops for good
  // when a rank fails mid-step: its peers' collectives were aborted. Any thread may ask.
  virtual std::string failure() const { return ""; }
};

// Device logits (any dtype) as host f32, the form Runner::forward returns.
Tensor to_host_f32(const Tensor& logits);

// One rank, or the parallel runner when options.parallel has more than one rank.
std::unique_ptr<Runner> create_runner(const RunnerOptions& options);

}  // namespace loom::runtime
