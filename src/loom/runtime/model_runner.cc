#include "loom/runtime/model_runner.h"

#include <filesystem>

#include "loom/runtime/parallel_runner.h"

#include "loom/cache/device_kv_sizing.h"
#include "loom/runtime/cuda_graph_runner.h"
#include "loom/runtime/piecewise_graph_runner.h"

namespace loom::runtime {

Tensor to_host_f32(const Tensor& logits) { return logits.to(Device::cpu()).to(DType::f32); }

namespace {

class SingleRankRunner final : public Runner {
 public:
  explicit SingleRankRunner(const RunnerOptions& o) {
    config_ = io::ModelConfig::load(o.model_path);
    LOOM_CHECK_ARG(o.load_format == "auto" || o.load_format == "dummy", "--load-format: unknown '",
                   o.load_format, "' (allowed: auto, dummy)");
    auto weights = o.load_format == "dummy" ? io::dummy_weights(0) : io::open_checkpoint(o.model_path);
    model::LoadOptions lo;
    lo.device = o.device;
    lo.dtype = o.device.is_cuda() ? DType::bf16 : DType::f32;
    lo.progress = o.progress;
    try {
      model_ = model::load_causal_lm(config_, *weights, lo);
    } catch (const Error& e) {
      if (o.device.is_cpu()) throw;
      throw Error(str("loading the weights of ", o.model_path, " onto ", o.device.str(), ": ", e.what()));
    }
    const KvLayout layout = model_->kv_layout();
#ifdef LOOM_HAVE_CUDA
    std::shared_ptr<GraphMemoryPool> graph_pool;
    if (o.device.is_cuda() && !o.disable_cuda_graph && !o.disable_piecewise_cuda_graph) {
      // Before the KV pool is sized, so that the pieces' memory counts against it.
      graph_pool = make_graph_memory_pool();
      piecewise_ = std::make_unique<PiecewiseGraphRunner>(*model_, o.piecewise_cuda_graph_max_tokens, o.page_size,
                                                          graph_pool, o.progress);
      release_cached_device_memory(o.device);  // the capture's scratch KV
    }
#endif
    int64_t tokens = o.max_total_tokens;
    if (tokens <= 0) tokens = o.device.is_cpu() ? kDefaultCpuKvTokens : 0;
    if (o.device.is_cuda()) {  // from free memory and --mem-fraction-static; a clear error if too small
      const cache::KvBudget budget = cache::device_kv_budget(layout, o.page_size, o.device,
                                                             o.mem_fraction_static, std::max<int64_t>(tokens, 1));
      if (tokens <= 0) tokens = budget.tokens;
    }
    LOOM_CHECK_ARG(tokens > 0, "--max-total-tokens must be given for this device");
    const int64_t pages = (tokens + o.page_size - 1) / o.page_size;
    pool_ = std::make_unique<cache::KvPool>(layout, pages, o.page_size, o.device);
#ifdef LOOM_HAVE_CUDA
    if (o.device.is_cuda() && !o.disable_cuda_graph) {
      const int64_t context = std::min<int64_t>(config_.max_position_embeddings, pages * o.page_size);
      graphs_ = std::make_unique<CudaGraphRunner>(*model_, pool_->buffers(), o.cuda_graph_max_bs,
                                                  (context + o.page_size - 1) / o.page_size, nullptr,
                                                  DataParallelDecode{}, o.progress, graph_pool);
    }
#endif
  }

  const io::ModelConfig& config() const override { return config_; }
  cache::KvPool& kv_pool() override { return *pool_; }
  Tensor forward(const model::ForwardBatch& batch) override {
    return to_host_f32(forward_device_logits(batch, true));
  }
  Tensor forward_device_logits(const model::ForwardBatch& batch, bool allow_graph) override {
#ifdef LOOM_HAVE_CUDA
    if (allow_graph && graphs_ && graphs_->can_run(batch)) return graphs_->replay(batch);
    if (allow_graph && piecewise_ && piecewise_->can_run(batch)) return piecewise_->replay(batch, pool_->buffers());
#endif
    LOOM_CHECK(!batch.previous_ids, "a step with the previous step's ids on the device needs a CUDA graph for its batch");
    return model_->forward_on_device(batch, pool_->buffers());
  }
  bool takes_previous_ids(const model::ForwardBatch& batch) const override {
#ifdef LOOM_HAVE_CUDA
    return graphs_ && graphs_->can_run(batch);
#else
    (void)batch;
    return false;
#endif
  }

 private:
  io::ModelConfig config_;
  std::unique_ptr<model::CausalLM> model_;
  std::unique_ptr<cache::KvPool> pool_;
#ifdef LOOM_HAVE_CUDA
  std::unique_ptr<PiecewiseGraphRunner> piecewise_;  // prefill/extend steps, unless either flag disables them
  std::unique_ptr<CudaGraphRunner> graphs_;  // decode steps, unless --disable-cuda-graph
#endif
};

}  // namespace

std::unique_ptr<Runner> create_runner(const RunnerOptions& options) {
  if (options.parallel.world_size() > 1) return create_parallel_runner(options);
  return std::make_unique<SingleRankRunner>(options);
}

}  // namespace loom::runtime
