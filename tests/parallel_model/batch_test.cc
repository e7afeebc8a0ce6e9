// Batches of several sequences (what the engine sends): attention-DP replicas each take their
// sequences, CP falls back to the plain path, and mixed steps (prefill chunks next to decodes,
// a chunk continuing a cached prefix) give the single-rank logits.
#include <gtest/gtest.h>

#include "loom/runtime/model_runner.h"
#include "model/reference.h"
#include "parallel_model/matrix.h"

using namespace loom;

namespace {

// Three sequences: a prefill of all positions, a long prefill, a short one; then a step where the
// first two decode and the third continues with a chunk of 9 tokens.
std::vector<model::ForwardBatch> steps(runtime::Runner& runner) {
  std::vector<std::vector<int32_t>> pages;
  for (int s = 0; s < 3; ++s) pages.push_back(*runner.kv_pool().allocate(runner.kv_pool().pages_for_tokens(64)));
  auto prompt = [](int n, int salt) {
    std::vector<int32_t> p(n);
    for (int i = 0; i < n; ++i) p[i] = (i * 131 + salt * 17 + 5) % 512;
    return p;
  };
  model::ForwardBatch first;
  first.seqs = {{prompt(5, 1), 0, pages[0], true}, {prompt(23, 2), 0, pages[1], false}, {prompt(3, 3), 0, pages[2], false}};
  model::ForwardBatch second;
  second.seqs = {{{7}, 5, pages[0], false}, {{11}, 23, pages[1], true}, {prompt(9, 4), 3, pages[2], true}};
  return {first, second};
}

std::vector<float> run(const runtime::RunnerOptions& o) {
  auto runner = runtime::create_runner(o);
  std::vector<float> all;
  for (const auto& b : steps(*runner)) {
    const auto l = runner->forward(b).to_float_vector();
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

class MixedBatch : public ::testing::TestWithParam<loom::testing::ParallelCase> {};

TEST_P(MixedBatch, EqualsOneRank) {
  for (const std::string name : {"tiny-qwen3-moe", "variants/qwen3-moe-h8-e12"}) {
    SCOPED_TRACE(name);
    runtime::RunnerOptions o;
    o.model_path = loom::testing::model_dir(name);
    o.max_total_tokens = 256;
    const auto expected = run(o);
    o.parallel = GetParam().config();
    o.moe_dispatch = GetParam().dispatch;
    const auto got = run(o);
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_LT(loom::testing::scaled_error(got, expected), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, MixedBatch,
                         ::testing::Values(loom::testing::ParallelCase{"tp2_dp2_ep2", 2, 2, 1, 1, 2},
                                           loom::testing::ParallelCase{"tp2_dp2_ep2_a2a", 2, 2, 1, 1, 2, "all_to_all"},
                                           loom::testing::ParallelCase{"tp4_dp2_ep2_gather", 4, 2, 1, 1, 2, "gather"},
                                           loom::testing::ParallelCase{"tp4_cp2_ep2", 4, 2, 1, 2},
                                           loom::testing::ParallelCase{"tp4_ep2_moedp2", 4, 2, 2}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
