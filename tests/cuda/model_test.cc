// Every Qwen3 / Qwen3-MoE / Mixtral / gpt-oss fixture on the GPU in bf16 against HF transformers' fp32 outputs
// (reference.json), through the same runner the CLI uses.
//
// Metric: scaled error = max |ours − ref| / max |ref| over a logits row (model/reference.h).
// Bound: kBf16Tolerance = 0.05: bf16 weights and activations round every value to 8 bits of
// mantissa (relative 2^-9), and a few layers of tiny random models amplify that to 1–3 % of the
// logits' scale. Greedy tokens: identical to the reference until the first step whose reference
// top-2 margin is within 2 · bound · scale (two logits each off by the bound may swap); a
// divergence at a step with a larger margin fails. The margin at each step comes from the CPU
// fp32 runner (within 1e-3 of HF, tests/model) on the reference's own prefix. Logits: one
// position of a prompt may exceed the bound where the fp32 run routes that token through a
// near-tie (its router's k-th and (k+1)-th logits within 2 · bound of scale): bf16 then picks the
// other expert (seen on tiny-mixtral, 4 experts top-2).
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdio>

#include "cuda/cuda_test_util.h"
#include "loom/io/model_config.h"
#include "loom/layers/moe.h"
#include "loom/runtime/generate.h"
#include "model/reference.h"

using namespace loom;
using loom::testing::model_dir;

namespace {

constexpr double kBf16Tolerance = 0.05;

// The smallest gap, over the MoE layers, between the k-th and (k+1)-th router logits of the
// prompt's token `position` on the fp32 CPU run, relative to that row's largest |logit|
// (infinity for a dense model). A gap within bf16's noise lets the GPU pick the other expert:
// a discrete change of that token's output that no tolerance covers.
double router_top_k_gap(runtime::Runner& cpu, const std::vector<int32_t>& prompt, size_t position, int64_t k) {
  std::vector<std::vector<float>> rows;
  layers::set_router_observer([&](const Tensor& logits) {
    if (logits.size(0) != static_cast<int64_t>(prompt.size())) return;  // one forward of the whole prompt
    const std::vector<float> all = logits.to_float_vector();
    const int64_t e = logits.size(1);
    rows.emplace_back(all.begin() + position * e, all.begin() + (position + 1) * e);
  });
  runtime::prompt_logits(cpu, prompt, false);
  layers::set_router_observer({});
  double gap = INFINITY;
  for (std::vector<float>& r : rows) {
    float scale = 0;
    for (float v : r) scale = std::max(scale, std::abs(v));
    std::sort(r.begin(), r.end(), std::greater<float>());
    if (k < static_cast<int64_t>(r.size())) gap = std::min(gap, static_cast<double>(r[k - 1] - r[k]) / scale);
  }
  return gap;
}

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
  const int64_t top_k = io::ModelConfig::load(dir).num_experts_per_tok;
  double worst = 0;
  for (const auto& c : ref["cases"]) {
    const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("prompt of " + std::to_string(prompt.size()) + " tokens");
    const Tensor logits = runtime::prompt_logits(*gpu, prompt, c.contains("all_logits"));
    std::vector<size_t> outliers;
    worst = std::max(worst, loom::testing::expect_logits_match(logits, c, prompt.size(), kBf16Tolerance, &outliers));
    // A position over the bound must be a routing flip, and at most one per prompt.
    EXPECT_LE(outliers.size(), 1u) << "positions over the bound: " << ::testing::PrintToString(outliers);
    for (size_t p : outliers) {
      const double gap = router_top_k_gap(*cpu, prompt, p, top_k);
      EXPECT_LE(gap, 2 * kBf16Tolerance) << "position " << p << " is over the bound without a near-tied router";
      std::printf("note: %s prompt %zu: position %zu over the bound; its router's top-%lld gap is %.4f of scale "
                  "(<= %.2f: a bf16 routing flip)\n",
                  GetParam().c_str(), prompt.size(), p, static_cast<long long>(top_k), gap, 2 * kBf16Tolerance);
    }
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

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaReferenceTest, ::testing::ValuesIn(loom::testing::gpu_checkpoints()),
                         [](const auto& info) { return loom::testing::checkpoint_test_name(info.param); });

}  // namespace
