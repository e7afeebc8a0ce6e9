#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "io_test_util.h"
#include "loom/io/weights.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io::testing;

TEST(DummyWeights, DeterministicPerSeedAndName) {
  const auto a = dummy_weights(7), b = dummy_weights(7), c = dummy_weights(8);
  EXPECT_EQ(a->describe(), "dummy weights (seed 7)");
  EXPECT_TRUE(a->has("anything.at.all"));
  const auto x = a->load("model.layers.0.mlp.gate_proj.weight", {16, 32}, DType::f32).to_float_vector();
  EXPECT_EQ(x, b->load("model.layers.0.mlp.gate_proj.weight", {16, 32}, DType::f32).to_float_vector());
  EXPECT_NE(x, c->load("model.layers.0.mlp.gate_proj.weight", {16, 32}, DType::f32).to_float_vector());
  EXPECT_NE(x, a->load("model.layers.0.mlp.up_proj.weight", {16, 32}, DType::f32).to_float_vector());
}

TEST(DummyWeights, ValuesAreUniformInTheScaledRange) {
  const auto src = dummy_weights(0);
  for (int64_t fan_in : {4, 64, 1024, 100000}) {
    SCOPED_TRACE(fan_in);
    const float s = std::clamp(1.0f / std::sqrt(static_cast<float>(fan_in)), 0.01f, 0.1f);
    const auto v = src->load("w.weight", {8, fan_in}, DType::f32).to_float_vector();
    double sum = 0;
    for (float x : v) {
      ASSERT_LE(std::abs(x), s);
      sum += x;
    }
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    EXPECT_LT(*lo, -0.9f * s);  // spans the range, not a constant
    EXPECT_GT(*hi, 0.9f * s);
    EXPECT_NEAR(sum / static_cast<double>(v.size()), 0.0, 0.05 * s);
  }
}

TEST(DummyWeights, NormWeightsAreNearOne) {
  const auto src = dummy_weights(3);
  for (const char* name : {"model.norm.weight", "model.layers.3.input_layernorm.weight",
                           "model.layers.3.post_attention_layernorm.weight", "model.layers.3.self_attn.q_norm.weight"}) {
    SCOPED_TRACE(name);
    const auto v = src->load(name, {256}, DType::f32).to_float_vector();
    for (float x : v) ASSERT_TRUE(x >= 0.95f && x <= 1.05f) << x;
    EXPECT_NE(*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
}

// A rank's slice must equal the same slice of the full tensor: along every dim, in every dtype,
// and across the threaded path for tensors over a million elements.
TEST(DummyWeights, SlicesAgreeWithTheFullTensor) {
  const auto src = dummy_weights(11);
  const Shape shape{3, 10, 6};
  const auto full = src->load("experts.w", shape, DType::f32).to_float_vector();
  for (int dim = 0; dim < 3; ++dim) {
    const Slice s{dim, 1, shape[dim] - 2};
    const auto part = src->load("experts.w", shape, DType::f32, s).to_float_vector();
    std::vector<float> expect;
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 10; ++j)
        for (int64_t k = 0; k < 6; ++k) {
          const int64_t idx[3] = {i, j, k};
          if (idx[dim] >= s.start && idx[dim] < s.start + s.length) expect.push_back(full[(i * 10 + j) * 6 + k]);
        }
    EXPECT_EQ(part, expect) << "dim " << dim;
  }
  const auto bf = src->load("experts.w", shape, DType::bf16, Slice{1, 2, 5}).to_float_vector();
  const auto f32 = src->load("experts.w", shape, DType::f32, Slice{1, 2, 5}).to_float_vector();
  ASSERT_EQ(bf.size(), f32.size());
  for (size_t i = 0; i < bf.size(); ++i) EXPECT_EQ(bf[i], bf16_to_f32(f32_to_bf16(f32[i])));
  const auto f16 = src->load("experts.w", shape, DType::f16).to_float_vector();
  for (size_t i = 0; i < f16.size(); ++i) EXPECT_EQ(f16[i], f16_to_f32(f32_to_f16(full[i])));

  // 2048 x 1024 = 2M elements: filled by several threads; a column slice (single-threaded) agrees.
  const Shape big{2048, 1024};
  const Tensor whole = src->load("model.embed_tokens.weight", big, DType::f32);
  const Tensor cols = src->load("model.embed_tokens.weight", big, DType::f32, Slice{1, 1000, 24});
  const float* w = whole.data<float>();
  const float* c = cols.data<float>();
  for (int64_t r = 0; r < 2048; r += 97)
    for (int64_t k = 0; k < 24; ++k) ASSERT_EQ(c[r * 24 + k], w[r * 1024 + 1000 + k]) << r << "," << k;
  const Tensor rows = src->load("model.embed_tokens.weight", big, DType::f32, Slice{0, 1500, 548});
  EXPECT_TRUE(std::equal(rows.data<float>(), rows.data<float>() + rows.numel(), w + 1500 * 1024));
}

TEST(DummyWeights, BadRequests) {
  const auto src = dummy_weights(0);
  expect_error([&] { src->load("w", {4, 4}, DType::i32); }, {"w", "i32"});
  expect_error([&] { src->load("w", {4, 4}, DType::f32, Slice{1, 3, 2}); }, {"'w'", "[4, 4]"});
}
