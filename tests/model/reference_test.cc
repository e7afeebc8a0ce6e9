// Every Qwen3 / Qwen3-MoE checkpoint in the test data against HF transformers' fp32 outputs:
// last-position (and all-position) logits within 1e-3 of the logits' scale, 12 greedy tokens equal.
#include <gtest/gtest.h>

#include "loom/runtime/generate.h"
#include "model/reference.h"

using namespace loom;
using loom::testing::model_dir;

namespace {

constexpr double kTolerance = 1e-3;

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
    const bool all = c.contains("all_logits");
    const Tensor logits = runtime::prompt_logits(*runner, prompt, all);
    const int64_t v = logits.size(1);
    const std::vector<float> flat = logits.to_float_vector();
    const std::vector<float> last(flat.end() - v, flat.end());
    EXPECT_LT(loom::testing::reference_error(last, c), kTolerance);
    if (all) {
      ASSERT_EQ(logits.size(0), static_cast<int64_t>(prompt.size()));
      for (size_t p = 0; p < prompt.size(); ++p) {
        const std::vector<float> row(flat.begin() + p * v, flat.begin() + (p + 1) * v);
        EXPECT_LT(loom::testing::scaled_error(row, c["all_logits"][p].get<std::vector<float>>()), kTolerance)
            << "position " << p;
      }
    }
    const auto greedy = c["greedy_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(runtime::generate_greedy(*runner, prompt, static_cast<int64_t>(greedy.size())), greedy);
  }
  EXPECT_EQ(runner->kv_pool().num_free(), runner->kv_pool().num_pages()) << "pages leaked";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceTest,
                         // The fixtures from ../shared, then checkpoints of other shapes made by
                         // scripts/make_shape_variants.py (MHA, MQA, head_dim 8/24/32, 5/6/12 experts,
                         // top-1/3/4, dense layers inside MoE models, other eps and rope_theta).
                         ::testing::Values("tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-moe-realvocab",
                                           "variants/qwen3-moe-mha-e6", "variants/qwen3-moe-mqa-e5",
                                           "variants/qwen3-dense-h6-d24", "variants/qwen3-moe-h8-e12"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n) if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

}  // namespace
