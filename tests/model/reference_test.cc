// Every Qwen3 / Qwen3-MoE / Mixtral checkpoint in the test data against HF transformers' fp32 outputs:
// last-position (and all-position) logits within 1e-4 of the logits' scale, 12 greedy tokens equal.
#include <gtest/gtest.h>

#include "loom/runtime/generate.h"
#include "model/reference.h"

using namespace loom;
using loom::testing::model_dir;

namespace {

constexpr double kTolerance = 1e-4;  // issue 2 asks for 1e-3; fp32 here lands below 1e-5

class ReferenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceTest, LogitsAndGreedyTokensMatchTransformers) {
  const std::string dir = model_dir(GetParam());
  runtime::RunnerOptions o;
  o.model_path = dir;
  o.max_total_tokens = 1024;
  auto runner = runtime::create_runner(o);
  const auto ref = loom::testing::load_reference(dir);
  ASSERT_GT(ref["cases"].size(), 0u);
  for (const auto& c : ref["cases"]) {
    const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("prompt of " + std::to_string(prompt.size()) + " tokens");
    const Tensor logits = runtime::prompt_logits(*runner, prompt, c.contains("all_logits"));
    loom::testing::expect_logits_match(logits, c, prompt.size(), kTolerance);
    const auto greedy = c["greedy_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(runtime::generate_greedy(*runner, prompt, static_cast<int64_t>(greedy.size())), greedy);
  }
  EXPECT_EQ(runner->kv_pool().num_free(), runner->kv_pool().num_pages()) << "pages leaked";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceTest, ::testing::ValuesIn(loom::testing::reference_checkpoints()),
                         [](const auto& info) { return loom::testing::checkpoint_test_name(info.param); });

}  // namespace
