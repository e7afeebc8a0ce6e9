// Every Qwen3 / Qwen3-MoE fixture on the GPU in bf16 against HF transformers' fp32 outputs
// (reference.json), through the same runner the CLI uses.
//
// Metric: scaled error = max |ours − ref| / max |ref| over a logits row (model/reference.h).
// Bound: kBf16Tolerance = 0.05: bf16 weights and activations round every value to 8 bits of
// mantissa (relative 2^-9), and a few layers of tiny random models amplify that to 1–3 % of the
// logits' scale. Greedy tokens: identical to the reference until the first step whose reference
// top-2 margin is within 2 · bound · scale (two logits each off by the bound may swap); a
// divergence at a step with a larger margin fails. The margin at each step comes from the CPU
// fp32 runner (within 1e-3 of HF, tests/model) on the reference's own prefix.
#include <algorithm>
#include <cstdio>

#include "cuda/cuda_test_util.h"
#include "loom/runtime/generate.h"
#include "model/reference.h"

using namespace loom;
using loom::testing::model_dir;

namespace {

constexpr double kBf16Tolerance = 0.05;

class CudaReferenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaReferenceTest, LogitsWithinBf16ToleranceAndGreedyTokensMatch) {
  SKIP_WITHOUT_GPU();
  const std::string dir = model_dir(GetParam());
  runtime::RunnerOptions o;
  o.model_path = dir;
  o.device = Device::cuda(0);
  o.max_total_tokens = 1024;
  o.mem_fraction_static = 0.5;
  o.cuda_graph_max_bs = 8;
  auto gpu = runtime::create_runner(o);
  runtime::RunnerOptions co;
  co.model_path = dir;
  co.max_total_tokens = 1024;
  auto cpu = runtime::create_runner(co);
  const auto ref = loom::testing::load_reference(dir);
  ASSERT_GT(ref["cases"].size(), 0u);
  double worst = 0;
  for (const auto& c : ref["cases"]) {
    const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("prompt of " + std::to_string(prompt.size()) + " tokens");
    const Tensor logits = runtime::prompt_logits(*gpu, prompt, c.contains("all_logits"));
    worst = std::max(worst, loom::testing::expect_logits_match(logits, c, prompt.size(), kBf16Tolerance));
    const auto greedy = c["greedy_ids"].get<std::vector<int32_t>>();
    const auto ours = runtime::generate_greedy(*gpu, prompt, static_cast<int64_t>(greedy.size()));
    ASSERT_EQ(ours.size(), greedy.size());
    for (size_t i = 0; i < greedy.size(); ++i) {
      if (ours[i] == greedy[i]) continue;
      std::vector<int32_t> prefix = prompt;
      prefix.insert(prefix.end(), greedy.begin(), greedy.begin() + i);
      const loom::testing::Margin m = loom::testing::top2_margin(runtime::prompt_logits(*cpu, prefix, false).to_float_vector());
      EXPECT_LE(m.margin, 2 * kBf16Tolerance * m.scale)
          << "greedy step " << i << ": ours " << ours[i] << ", reference " << greedy[i] << " with top-2 margin "
          << m.margin << " (scale " << m.scale << ")";
      std::printf("note: %s prompt %zu: greedy diverges at step %zu where the reference margin is %.4f (<= %.4f)\n",
                  GetParam().c_str(), prompt.size(), i, m.margin, 2 * kBf16Tolerance * m.scale);
      break;  // after a legitimate divergence the continuations are different texts
    }
  }
  std::printf("%s: worst scaled logits error on cuda bf16 %.4g (bound %.2g)\n", GetParam().c_str(), worst,
              kBf16Tolerance);
  EXPECT_EQ(gpu->kv_pool().num_free(), gpu->kv_pool().num_pages()) << "pages leaked";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaReferenceTest, ::testing::ValuesIn(loom::testing::qwen3_checkpoints()),
                         [](const auto& info) { return loom::testing::checkpoint_test_name(info.param); });

}  // namespace
