// DeepSeek-V2 pieces the reference test does not isolate (its fixture routes greedily, without
// YaRN): the grouped router op, YaRN's attention factor, and what loom refuses at load.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "loom/layers/ops.h"
#include "loom/layers/rope.h"
#include "loom/model/causal_lm.h"
#include "model/reference.h"

using namespace loom;

namespace {

// The hand case of CpuOps.GroupedTopkPicksWithinTheBestGroups, as logits whose softmax gives it back.
TEST(DeepseekV2, GroupedRouterScalesAndRenormalises) {
  const std::vector<float> scores = {0.05f, 0.30f, 0.20f, 0.02f, 0.25f, 0.01f, 0.10f, 0.07f};
  std::vector<float> logits;
  for (float s : scores) logits.push_back(std::log(s));
  const Tensor t = Tensor::from_floats(logits, {1, 8});
  for (bool renormalize : {false, true}) {
    SCOPED_TRACE(renormalize ? "renormalised" : "not renormalised");
    const auto r = layers::ops::route_grouped_topk_softmax(t, {3, 4, 2, renormalize, 2.5f});
    const std::vector<float> w = r.weights.to_float_vector();
    EXPECT_EQ(std::vector<int32_t>(r.ids.data<int32_t>(), r.ids.data<int32_t>() + 3), (std::vector<int32_t>{1, 4, 0}));
    const float sum = renormalize ? 0.60f : 1.0f;
    const int chosen[3] = {1, 4, 0};
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(w[j], scores[chosen[j]] / sum * 2.5f, 1e-6);
  }
}

// YaRN's cos/sin factor is mscale(factor, mscale) / mscale(factor, mscale_all_dim) only when both
// are given and non-zero (transformers tests their truth), else mscale(factor, 1).
TEST(DeepseekV2, YarnAttentionFactor) {
  io::RopeParameters p;
  p.type = "yarn";
  p.factor = 40;
  p.original_max_position_embeddings = 4096;
  p.mscale = 0.707;
  p.mscale_all_dim = 0.707;  // DeepSeek-V2's: the factors cancel
  EXPECT_FLOAT_EQ(layers::make_rope(p, 64, 163840, Device::cpu()).scaling, 1.0f);
  p.mscale_all_dim = 1.0;
  EXPECT_FLOAT_EQ(layers::make_rope(p, 64, 163840, Device::cpu()).scaling,
                  static_cast<float>((0.0707 * std::log(40.0) + 1) / (0.1 * std::log(40.0) + 1)));
  p.mscale_all_dim = 0.0;
  EXPECT_FLOAT_EQ(layers::make_rope(p, 64, 163840, Device::cpu()).scaling, static_cast<float>(0.1 * std::log(40.0) + 1));
}

// Loads the fixture with `edit` applied to its config.json; returns the load error ("" if none).
std::string load_error(const std::function<void(nlohmann::json&)>& edit, Device device = Device::cpu()) {
  const std::string dir = loom::testing::model_dir("tiny-deepseek-v2");
  nlohmann::json j = io::ModelConfig::load(dir).raw;
  edit(j);
  const auto weights = io::open_checkpoint(dir);
  model::LoadOptions o;
  o.device = device;
  try {
    model::load_causal_lm(io::ModelConfig::from_json(j, dir), *weights, o);
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    return e.what();
  }
  return "";
}

TEST(DeepseekV2, RefusesWhatItDoesNotRun) {
  EXPECT_EQ(load_error([](nlohmann::json&) {}), "");
  // On CUDA only small latents run so far (refused before any weight or device is touched).
  EXPECT_NE(load_error([](nlohmann::json& j) { j["kv_lora_rank"] = 512; }, Device::cuda(0))
                .find("kv_lora_rank + qk_rope_head_dim <= 128"),
            std::string::npos);
  EXPECT_NE(load_error([](nlohmann::json& j) { j["topk_method"] = "noaux_tc"; }).find("'noaux_tc' is not supported"),
            std::string::npos);
  const auto grouped = [](int n_group, int topk_group) {
    return [=](nlohmann::json& j) {
      j["topk_method"] = "group_limited_greedy";
      j["n_group"] = n_group;
      j["topk_group"] = topk_group;
    };
  };
  EXPECT_NE(load_error(grouped(3, 2)).find("n_group 3 does not divide the 8 routed experts"), std::string::npos);
  EXPECT_NE(load_error(grouped(2, 3)).find("topk_group 3 exceeds n_group 2"), std::string::npos);
  EXPECT_EQ(load_error(grouped(4, 2)), "");
  EXPECT_NE(load_error([](nlohmann::json& j) { j["attention_bias"] = true; }).find("attention_bias is not supported"),
            std::string::npos);
}

}  // namespace
