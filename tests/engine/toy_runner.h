// A deterministic stand-in for the model, for scheduler tests: it writes each token into its
// KV slot (through the page table, like the real model) and derives the next-token logits from
// everything the sequence has in its KV, so a wrong page table, a lost page or a wrong start_pos
// changes the output. Records every batch it ran.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "loom/runtime/model_runner.h"

namespace loom::engine::testing {

class ToyRunner final : public runtime::Runner {
 public:
  static constexpr int64_t kVocab = 4096;

  ToyRunner(int64_t num_pages, int64_t page_size, int64_t context = 4096) {
    config_.vocab_size = kVocab;
    config_.max_position_embeddings = context;
    KvLayout layout;  // no tensors: the toy keeps token ids per slot itself
    pool_ = std::make_unique<cache::KvPool>(layout, num_pages, page_size, Device::cpu());
    slots_.assign(static_cast<size_t>((num_pages + 1) * page_size), -1);
  }

  const io::ModelConfig& config() const override { return config_; }
  cache::KvPool& kv_pool() override { return *pool_; }

  Tensor forward(const model::ForwardBatch& batch) override {
    batches.push_back(batch);
    const int64_t ps = pool_->page_size();
    std::vector<float> logits;
    for (const auto& s : batch.seqs) {
      const int64_t end = s.start_pos + static_cast<int64_t>(s.tokens.size());
      LOOM_CHECK(static_cast<int64_t>(s.page_table.size()) * ps >= end, "toy: page table too short");
      for (size_t j = 0; j < s.tokens.size(); ++j) {
        const int64_t pos = s.start_pos + static_cast<int64_t>(j);
        slots_[static_cast<size_t>(s.page_table[pos / ps] * ps + pos % ps)] = s.tokens[j];
      }
      uint64_t h = 1469598103934665603ull;
      for (int64_t pos = 0; pos < end; ++pos) {
        h = (h ^ static_cast<uint64_t>(slots_[static_cast<size_t>(s.page_table[pos / ps] * ps + pos % ps)] + 7)) *
            1099511628211ull;
      }
      // A clear winner plus a few runners-up, so sampling has choices.
      std::vector<float> row(kVocab, 0.0f);
      const int64_t target = 200 + static_cast<int64_t>(h % 3000);
      for (int64_t k = 0; k < 8; ++k) row[static_cast<size_t>(target + k)] = 4.0f - 0.5f * static_cast<float>(k);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    return Tensor::from_floats(logits, {static_cast<int64_t>(batch.seqs.size()), kVocab});
  }

  std::vector<model::ForwardBatch> batches;

 private:
  io::ModelConfig config_;
  std::unique_ptr<cache::KvPool> pool_;
  std::vector<int32_t> slots_;
};

}  // namespace loom::engine::testing
