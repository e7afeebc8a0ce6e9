// Reads a fixture's reference.json (HF transformers outputs) and compares loom's logits to it.
#pragma once
#include <algorithm>
#include <cctype>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "loom/tensor/tensor.h"

namespace loom::testing {

inline std::string model_dir(const std::string& name) { return std::string(LOOM_TEST_DATA) + "/models/" + name; }

// Every Qwen3 / Qwen3-MoE checkpoint with a reference.json: the fixtures from ../shared, then
// checkpoints of other shapes made by scripts/make_shape_variants.py (MHA, MQA, head_dim 8/24/32,
// 5/6/12 experts, top-1/3/4, dense layers inside MoE models, other eps and rope_theta).
inline const std::vector<std::string>& qwen3_checkpoints() {
  static const std::vector<std::string> names = {
      "tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-moe-realvocab", "variants/qwen3-moe-mha-e6",
      "variants/qwen3-moe-mqa-e5", "variants/qwen3-dense-h6-d24", "variants/qwen3-moe-h8-e12"};
  return names;
}

// The checkpoints the CUDA tests cover (every family whose kernels exist on the GPU).
inline const std::vector<std::string>& gpu_checkpoints() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = qwen3_checkpoints();
    n.push_back("tiny-mixtral");
    n.push_back("tiny-gpt-oss");
    n.push_back("tiny-deepseek-v2");  // latent 32 + rope 8: within loom's CUDA attention kernel
    n.push_back("variants/deepseek-v2-latent512");  // 512 + 64: FlashInfer's MLA kernel
    return n;
  }();
  return names;
}

// The checkpoints of every architecture the CPU tests cover.
inline const std::vector<std::string>& decoder_checkpoints() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = qwen3_checkpoints();
    n.push_back("tiny-mixtral");
    n.push_back("tiny-gpt-oss");
    n.push_back("tiny-deepseek-v2");
    return n;
  }();
  return names;
}

// decoder_checkpoints() and the ones only the single-rank reference test takes on the CPU:
// DeepSeek-V2 at the released latent (512 + 64, with the q LoRA, grouped top-k and V2-Lite's
// YaRN), whose CPU parallel matrix would cost CI ~10 minutes for code the tiny DeepSeek fixture
// already runs under every layout (the GPU runs the matrix on it: tests/cuda/parallel_test.cc).
inline const std::vector<std::string>& reference_checkpoints() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = decoder_checkpoints();
    n.push_back("variants/deepseek-v2-latent512");
    return n;
  }();
  return names;
}

// A gtest parameter name for a checkpoint ("variants/qwen3-moe-mha-e6" -> "variants_qwen3_moe_mha_e6").
inline std::string checkpoint_test_name(std::string name) {
  for (auto& ch : name)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

inline nlohmann::json load_reference(const std::string& dir) {
  std::ifstream f(dir + "/reference.json");
  EXPECT_TRUE(f.good()) << "no reference.json in " << dir;
  return nlohmann::json::parse(f);
}

// max |a - b| / max |b|: error relative to the logits' scale.
inline double scaled_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 1e-12;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / scale;
}

// Compares one row of logits with a case's reference: the full row when given, else the top-50.
inline double reference_error(const std::vector<float>& row, const nlohmann::json& c) {
  if (c.contains("last_logits")) return scaled_error(row, c["last_logits"].get<std::vector<float>>());
  const auto ids = c["last_top50_ids"].get<std::vector<int>>();
  const auto ref = c["last_top50_logits"].get<std::vector<float>>();
  std::vector<float> ours;
  for (int id : ids) ours.push_back(row.at(id));
  return scaled_error(ours, ref);
}

// Checks a prompt's logits ([1, V], or [prompt, V] when the case has all_logits) against the
// case: the last row, and every position where given, within `tolerance` of scale. Returns the
// worst error seen. With `outliers`, the positions over the tolerance are listed there for the
// caller to account for instead of failing here.
inline double expect_logits_match(const Tensor& logits, const nlohmann::json& c, size_t prompt_len, double tolerance,
                                  std::vector<size_t>* outliers = nullptr) {
  const int64_t v = logits.size(1);
  const std::vector<float> flat = logits.to_float_vector();
  const std::vector<float> last(flat.end() - v, flat.end());
  double worst = reference_error(last, c);
  const auto check = [&](double e, size_t p) {
    if (outliers && e >= tolerance) {
      if (std::find(outliers->begin(), outliers->end(), p) == outliers->end()) outliers->push_back(p);
    } else {
      EXPECT_LT(e, tolerance) << "position " << p;
    }
  };
  check(worst, prompt_len - 1);
  if (c.contains("all_logits")) {
    EXPECT_EQ(logits.size(0), static_cast<int64_t>(prompt_len));
    if (logits.size(0) != static_cast<int64_t>(prompt_len)) return worst;
    for (size_t p = 0; p < prompt_len; ++p) {
      const std::vector<float> row(flat.begin() + p * v, flat.begin() + (p + 1) * v);
      const double e = scaled_error(row, c["all_logits"][p].get<std::vector<float>>());
      worst = std::max(worst, e);
      check(e, p);
    }
  }
  return worst;
}

}  // namespace loom::testing
