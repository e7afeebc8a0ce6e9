// What the runtime sees of a model: a config, a KV layout and a forward step.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "loom/io/model_config.h"
#include "loom/io/weights.h"
#include "loom/layers/forward_context.h"
#include "loom/layers/parallel_state.h"
#include "loom/tensor/kv_buffers.h"
#include "loom/model/forward_batch.h"

namespace loom::model {

// Start-up progress: `done` of `total` steps of `stage` ("loading weights", "capturing CUDA graphs").
using ProgressFn = std::function<void(const char* stage, int64_t done, int64_t total)>;

struct LoadOptions {
  Device device = Device::cpu();
  DType dtype = DType::f32;  // activations and weights: f32 on CPU, bf16 on CUDA
  // This rank's groups in a parallel run (null: one rank). Outlives the model.
  std::shared_ptr<const layers::ParallelState> parallel;
  ProgressFn progress;  // called after each decoder layer is loaded (may be empty)
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const io::ModelConfig& config() const = 0;
  virtual KvLayout kv_layout() const = 0;
  // Device-only work (capturable in a CUDA graph): token ids i32 [T] and every tensor of `ctx`
  // are already on the model's device. Writes the step's K/V into ctx.kv and returns logits
  // [ctx.logit_rows.numel(), vocab] on the device, in the model's dtype.
  Tensor forward_device(const Tensor& ids, const layers::ForwardContext& ctx) {
    return logits(forward_hidden(ids, ctx), ctx);
  }
  // The same in two parts (piecewise CUDA graphs capture the first): the hidden states after the
  // final norm [T, hidden], then the LM head over the rows ctx.logit_rows names.
  virtual Tensor forward_hidden(const Tensor& ids, const layers::ForwardContext& ctx) = 0;
  virtual Tensor logits(const Tensor& hidden, const layers::ForwardContext& ctx) = 0;
  virtual Device device() const = 0;

  // Runs the batch, writing its K/V into `kv`; returns f32 logits [batch.num_logit_rows(), vocab]
  // on the host, rows in batch order. In a parallel run every rank calls it with the same batch
  // and runs its share (model/rank_context.h); every rank returns the whole batch's logits.
  Tensor forward(const ForwardBatch& batch, const KvBuffers& kv);
  // The same, leaving the logits on the device in the model's dtype (no host copy).
  Tensor forward_on_device(const ForwardBatch& batch, const KvBuffers& kv);

 protected:
  virtual const layers::ParallelState* parallel_state() const { return nullptr; }
};

// Model-dependent checks of a parallel configuration (heads over attention TP, experts over EP,
// ...), before any rank starts: InvalidArgument naming the numbers of the first impossible one.
void check_parallel_fit(const io::ModelConfig& config, const parallel::ParallelConfig& parallel);

// The architectures loom runs, as "Name1, Name2" for error messages.
std::string supported_architectures();

// Reads DIR/config.json, picks the architecture and loads its weights from `weights`.
std::unique_ptr<CausalLM> load_causal_lm(const io::ModelConfig& config,
                                         const io::WeightSource& weights,
                                         const LoadOptions& options);

}  // namespace loom::model
