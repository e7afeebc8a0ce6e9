#include "loom/runtime/generate.h"

namespace loom::runtime {
namespace {

// Pages for `tokens` positions, freed when the scope ends (also on an exception).
class ScopedPages {
 public:
  ScopedPages(cache::KvPool& pool, int64_t tokens) : pool_(pool) {
    auto pages = pool.allocate(pool.pages_for_tokens(tokens));
    LOOM_CHECK_ARG(pages.has_value(), "the request needs ", tokens, " KV positions but the pool holds ",
                   pool.num_free() * pool.page_size(), " (raise --max-total-tokens)");
    pages_ = std::move(*pages);
  }
  ~ScopedPages() { pool_.free(pages_); }
  const std::vector<int32_t>& ids() const { return pages_; }

 private:
  cache::KvPool& pool_;
  std::vector<int32_t> pages_;
};

}  // namespace

void check_prompt(const std::vector<int32_t>& prompt, int64_t vocab_size) {
  LOOM_CHECK_ARG(!prompt.empty(), "the prompt is empty");
  for (int32_t id : prompt)
    LOOM_CHECK_ARG(id >= 0 && id < vocab_size, "prompt token id ", id, " is outside the vocabulary [0, ",
                   vocab_size, ")");
}

Tensor prompt_logits(Runner& runner, const std::vector<int32_t>& prompt, bool all_positions) {
  check_prompt(prompt, runner.config().vocab_size);
  ScopedPages pages(runner.kv_pool(), static_cast<int64_t>(prompt.size()));
  model::ForwardBatch batch;
  batch.seqs.push_back({prompt, 0, pages.ids(), all_positions});
  return runner.forward(batch);
}

std::vector<int32_t> generate_greedy(Runner& runner, const std::vector<int32_t>& prompt, int64_t max_new_tokens) {
  check_prompt(prompt, runner.config().vocab_size);
  LOOM_CHECK_ARG(max_new_tokens >= 0, "max_new_tokens must be >= 0");
  std::vector<int32_t> out;
  if (max_new_tokens == 0) return out;
  const int64_t total = static_cast<int64_t>(prompt.size()) + max_new_tokens;
  ScopedPages pages(runner.kv_pool(), total);
  model::ForwardBatch batch;
  batch.seqs.push_back({prompt, 0, pages.ids(), false});
  int32_t next = argmax_rows(runner.forward(batch))[0];
  out.push_back(next);
  while (static_cast<int64_t>(out.size()) < max_new_tokens) {
    auto& s = batch.seqs[0];
    s.start_pos += static_cast<int32_t>(s.tokens.size());
    s.tokens = {next};
    next = argmax_rows(runner.forward(batch))[0];
    out.push_back(next);
  }
  return out;
}

std::vector<int32_t> argmax_rows(const Tensor& logits) {
  LOOM_CHECK(logits.dim() == 2 && logits.dtype() == DType::f32 && logits.device().is_cpu(),
             "argmax_rows takes host f32 [R, V] logits, got ", logits.str());
  const Tensor l = logits.contiguous();
  const int64_t rows = l.size(0), v = l.size(1);
  std::vector<int32_t> out(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = l.data<float>() + r * v;
    int64_t best = 0;
    for (int64_t i = 1; i < v; ++i)
      if (row[i] > row[best]) best = i;
    out[r] = static_cast<int32_t>(best);
  }
  return out;
}

}  // namespace loom::runtime
