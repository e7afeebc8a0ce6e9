// Context-parallel prefill: the zigzag split of the new tokens over ATTN_CP, the fallback to the
// plain path, and decode after a CP prefill without any CP traffic.
#include <gtest/gtest.h>

#include "loom/cache/kv_pool.h"
#include "loom/model/rank_context.h"
#include "loom/runtime/generate.h"
#include "loom/runtime/parallel_runner.h"
#include "model/reference.h"
#include "parallel_model/matrix.h"

using namespace loom;

namespace {

parallel::ParallelConfig cp_config(int tp, int cp) {
  parallel::ParallelConfig c;
  c.tp = tp;
  c.attn_cp = cp;
  c.prefill_cp = true;
  return c;
}

TEST(ContextParallel, ZigzagGivesRankRChunksRAnd2cpMinus1MinusR) {
  cache::KvPool pool({1, 1, 2, 2, DType::f32}, 4, 16, Device::cpu());
  model::ForwardBatch b;
  std::vector<int32_t> tokens(10);
  for (int i = 0; i < 10; ++i) tokens[i] = 100 + i;
  b.seqs = {{tokens, 0, {1}, false}};
  // 10 tokens in 4 chunks: [0,2) [2,5) [5,7) [7,10); rank 0 takes chunks 0 and 3, rank 1 chunks 1 and 2.
  const std::vector<std::vector<int32_t>> want = {{0, 1, 7, 8, 9}, {2, 3, 4, 5, 6}};
  for (int r = 0; r < 2; ++r) {
    std::vector<int32_t> ids;
    const auto ctx = model::make_rank_context(b, pool.buffers(), Device::cpu(), cp_config(2, 2), r, ids);
    EXPECT_TRUE(ctx.cp_split);
    EXPECT_EQ(ctx.h_positions, want[r]);
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], 100 + want[r][i]);
    EXPECT_EQ(ctx.cp_counts, (std::vector<int64_t>{5, 5}));
    EXPECT_EQ(ctx.cp_whole->num_tokens, 10);
    EXPECT_EQ(ctx.h_logit_rows, r == 0 ? std::vector<int32_t>{4} : std::vector<int32_t>{});  // the last token
  }
}

TEST(ContextParallel, ShortPromptsAndBatchesFallBackToThePlainPath) {
  cache::KvPool pool({1, 1, 2, 2, DType::f32}, 4, 16, Device::cpu());
  model::ForwardBatch short_prompt;
  short_prompt.seqs = {{{1, 2, 3}, 0, {1}, false}};  // 3 < 2·cp = 4
  EXPECT_FALSE(model::splits_over_cp(short_prompt, cp_config(2, 2)));
  model::ForwardBatch two;
  two.seqs = {{{1, 2, 3, 4, 5}, 0, {1}, false}, {{1, 2, 3, 4, 5}, 0, {2}, false}};
  EXPECT_FALSE(model::splits_over_cp(two, cp_config(2, 2)));
  auto no_flag = cp_config(2, 2);
  no_flag.prefill_cp = false;
  two.seqs.pop_back();
  EXPECT_FALSE(model::splits_over_cp(two, no_flag));
  EXPECT_TRUE(model::splits_over_cp(two, cp_config(2, 2)));
}

uint64_t calls(const std::vector<runtime::CommCount>& counts, const std::string& op) {
  uint64_t n = 0;
  for (const auto& c : counts) n += c.op == op ? c.calls : 0;
  return n;
}

TEST(ContextParallel, DecodeAfterACpPrefillSendsNoCpTraffic) {
  runtime::RunnerOptions o;
  o.model_path = loom::testing::model_dir("tiny-qwen3-moe");
  o.max_total_tokens = 64;
  o.parallel = cp_config(2, 2);  // attn_tp 1: the only traffic is CP's and MoE TP's all-reduce
  auto runner = runtime::create_runner(o);
  const auto pages = *runner->kv_pool().allocate(runner->kv_pool().pages_for_tokens(20));
  model::ForwardBatch b;
  b.seqs = {{{5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45}, 0, pages, false}};
  runtime::reset_comm_counts(*runner);
  runner->forward(b);
  EXPECT_GT(calls(runtime::comm_counts(*runner), "all_gather"), 0u);  // K/V over ATTN_CP
  for (int step = 0; step < 3; ++step) {
    b.seqs[0].start_pos += static_cast<int32_t>(b.seqs[0].tokens.size());
    b.seqs[0].tokens = {7};
    runtime::reset_comm_counts(*runner);
    runner->forward(b);
    EXPECT_EQ(calls(runtime::comm_counts(*runner), "all_gather"), 0u) << "decode step " << step;
  }
  runner->kv_pool().free(pages);
}

}  // namespace
