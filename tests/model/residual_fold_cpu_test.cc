// The residual stream through the sublayers' forward_residual (DecoderTrunk::hidden_residual) on
// the CPU: its ops normalize first and add after (nothing to fold there), so every checkpoint's
// logits equal the add_rms_norm trunk's exactly; this checks the plumbing of the path CUDA decode
// steps take (tests/cuda/residual_fold_test.cc checks the folded kernels). And the ops' CPU forms.
#include <gtest/gtest.h>

#include <random>

#include "loom/layers/ops.h"
#include "loom/runtime/generate.h"
#include "loom/runtime/model_runner.h"
#include "model/reference.h"

using namespace loom;
namespace ops = loom::layers::ops;

namespace {

Tensor random_rows(const Shape& shape, std::mt19937& rng) {
  std::normal_distribution<float> d;
  Tensor t = Tensor::empty(shape, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

TEST(ResidualFoldCpu, NormedOpsEqualNormalizeThenOp) {
  std::mt19937 rng(5);
  const Tensor x = random_rows({3, 16}, rng), norm = random_rows({16}, rng), w = random_rows({10, 16}, rng);
  const Tensor normed = ops::rms_norm(x, norm, 1e-6f);
  EXPECT_EQ(ops::linears(ops::Normed{x, norm, 1e-6f}, {&w})[0].to_float_vector(),
            ops::linear(normed, w).to_float_vector());

  Tensor folded = x.clone(), plain = x.clone();
  const Tensor wo = random_rows({16, 10}, rng), a = random_rows({3, 10}, rng);
  ops::linear_add_(folded, a, wo);
  ops::add_(plain, ops::linear(a, wo));
  EXPECT_EQ(folded.to_float_vector(), plain.to_float_vector());

  Tensor router_in;
  const ops::Routing r = ops::linear_route_topk_softmax(ops::Normed{x, norm, 1e-6f}, w, 3, true, router_in);
  const ops::Routing ref = ops::linear_route_topk_softmax(normed, w, 3, true);
  EXPECT_EQ(router_in.to_float_vector(), normed.to_float_vector());
  EXPECT_EQ(r.ids.to_float_vector(), ref.ids.to_float_vector());
  EXPECT_EQ(r.weights.to_float_vector(), ref.weights.to_float_vector());

  const Tensor wgu = random_rows({10, 2 * 8, 16}, rng), wd = random_rows({10, 16, 8}, rng);
  Tensor moe_folded = x.clone(), moe_plain = x.clone();
  ops::moe_experts_add_(moe_folded, normed, r, wgu, wd, 0);
  ops::add_(moe_plain, ops::moe_experts(normed, r, wgu, wd, 0));
  EXPECT_EQ(moe_folded.to_float_vector(), moe_plain.to_float_vector());
}

TEST(ResidualFoldCpu, OnlyCudaDecodeStepsFoldUnlessOverridden) {
  EXPECT_FALSE(ops::folds_residual_norms(1, Device::cpu()));
  {
    const ops::FoldResidualNormsOverride on(true);
    EXPECT_TRUE(ops::folds_residual_norms(1, Device::cpu()));
    EXPECT_TRUE(ops::folds_residual_norms(100, Device::cpu()));
  }
  {
    const ops::FoldResidualNormsOverride off(false);
    EXPECT_FALSE(ops::folds_residual_norms(1, Device::cuda(0)));
  }
  EXPECT_FALSE(ops::folds_residual_norms(1, Device::cpu()));
}

class ResidualFoldCpuModels : public ::testing::TestWithParam<std::string> {};

std::vector<float> all_logits(const std::string& dir, bool fold, const std::vector<int32_t>& prompt) {
  const ops::FoldResidualNormsOverride mode(fold);
  runtime::RunnerOptions o;
  o.model_path = dir;
  o.max_total_tokens = 256;
  auto runner = runtime::create_runner(o);
  return runtime::prompt_logits(*runner, prompt, true).to_float_vector();
}

TEST_P(ResidualFoldCpuModels, LogitsEqualTheAddRmsNormTrunkExactly) {
  const std::string dir = loom::testing::model_dir(GetParam());
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5};
  const std::vector<float> plain = all_logits(dir, false, prompt), folded = all_logits(dir, true, prompt);
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(folded, plain);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ResidualFoldCpuModels, ::testing::ValuesIn(loom::testing::gpu_checkpoints()),
                         [](const auto& info) { return loom::testing::checkpoint_test_name(info.param); });

}  // namespace
