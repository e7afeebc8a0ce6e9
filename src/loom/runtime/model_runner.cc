#include "loom/runtime/model_runner.h"

#include <filesystem>

namespace loom::runtime {
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
    model_ = model::load_causal_lm(config_, *weights, lo);
    const KvLayout layout = model_->kv_layout();
    int64_t tokens = o.max_total_tokens;
    if (tokens <= 0) tokens = o.device.is_cpu() ? 65536 : 0;
    LOOM_CHECK_ARG(tokens > 0, "--max-total-tokens must be given for this device");
    const int64_t pages = (tokens + o.page_size - 1) / o.page_size;
    pool_ = std::make_unique<cache::KvPool>(layout, pages, o.page_size, o.device);
  }

  const io::ModelConfig& config() const override { return config_; }
  cache::KvPool& kv_pool() override { return *pool_; }
  Tensor forward(const model::ForwardBatch& batch) override {
    return model_->forward(batch, pool_->buffers());
  }

 private:
  io::ModelConfig config_;
  std::unique_ptr<model::CausalLM> model_;
  std::unique_ptr<cache::KvPool> pool_;
};

}  // namespace

std::unique_ptr<Runner> create_runner(const RunnerOptions& options) {
  return std::make_unique<SingleRankRunner>(options);
}

}  // namespace loom::runtime
