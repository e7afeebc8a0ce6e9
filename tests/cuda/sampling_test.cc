// Sampling on the GPU (runtime::DeviceSampler) against the host sampler (engine::Sampler) on the
// same bf16 logits, with the same seeds: greedy rows must choose the same token always; seeded
// draws the same token except where float rounding of the probabilities moves a boundary.
#include <random>

#include "cuda_test_util.h"
#include "loom/engine/sampler.h"
#include "loom/kernels/cuda/kernels.h"
#include "loom/tensor/cuda_stream.h"
#include "loom/runtime/device_sampler.h"
#include "loom/runtime/model_runner.h"

namespace loom {
namespace {

struct Case {
  const char* name;
  engine::SamplingParams params;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  auto p = [](double t) {
    engine::SamplingParams s;
    s.temperature = t;
    return s;
  };
  c.push_back({"greedy", p(0)});
  {
    auto s = p(0);
    s.repetition_penalty = 1.3;
    s.frequency_penalty = 0.5;
    s.presence_penalty = 0.25;
    s.logit_bias = {{5, 3.5f}, {77, -100.0f}};
    c.push_back({"greedy+penalties+bias", s});
  }
  c.push_back({"temperature 1", p(1.0)});
  c.push_back({"temperature 0.7", p(0.7)});
  {
    auto s = p(0.8);
    s.top_k = 20;
    c.push_back({"top_k 20", s});
  }
  {
    auto s = p(1.0);
    s.top_p = 0.9;
    c.push_back({"top_p 0.9", s});
  }
  {
    auto s = p(1.2);
    s.top_k = 50;
    s.top_p = 0.8;
    s.min_p = 0.05;
    c.push_back({"top_k+top_p+min_p", s});
  }
  {
    auto s = p(0.9);
    s.min_p = 0.1;
    s.repetition_penalty = 1.2;
    s.frequency_penalty = 0.3;
    c.push_back({"min_p+penalties", s});
  }
  return c;
}

// Rows whose logits favour a few tokens (like a model) over a bf16-rounded background, with ties.
Tensor model_like_logits(int64_t rows, int64_t vocab, std::mt19937& rng) {
  Tensor t = testing::rand_host({rows, vocab}, 2.0f, rng);
  std::uniform_int_distribution<int64_t> tok(0, vocab - 1);
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < 12; ++k) t.data<float>()[r * vocab + tok(rng)] = bf16_to_f32(f32_to_bf16(6.0f + 0.25f * (k % 5)));
  return t;
}

TEST(DeviceSampling, MatchesTheHostSamplerStepByStep) {
  SKIP_WITHOUT_GPU();
  for (int64_t vocab : {int64_t{1000}, int64_t{151936}}) {
    const int64_t rows = 16, steps = 12;
    std::mt19937 rng(1234);
    for (const Case& c : cases()) {
      std::vector<int32_t> prompt;
      for (int i = 0; i < 40; ++i) prompt.push_back(static_cast<int32_t>(rng() % vocab));
      std::vector<engine::Sampler> host, device;
      for (int64_t r = 0; r < rows; ++r) {
        auto p = c.params;
        p.seed = 1000 + static_cast<uint64_t>(r);
        p.logprobs = r % 2 ? 0 : -1;
        host.emplace_back(p, prompt, 0);
        device.emplace_back(p, prompt, 0);
      }
      runtime::DeviceSampler ds;
      int64_t same = 0, total = 0;
      for (int64_t step = 0; step < steps; ++step) {
        const Tensor logits = model_like_logits(rows, vocab, rng);
        std::vector<runtime::SampleRowPlan> plans(rows);
        std::vector<runtime::LogitEdit> edits;
        for (int64_t r = 0; r < rows; ++r) device[r].plan_device(plans[r], edits, vocab);
        std::vector<int32_t> ids;
        std::vector<float> lps;
        ds.sample(testing::to_gpu_bf16(logits), vocab, plans, edits, nullptr, 0, ids, lps);
        for (int64_t r = 0; r < rows; ++r) {
          engine::TokenLogprob lp;
          const int32_t want = host[r].sample(logits.data<float>() + r * vocab, vocab, &lp);
          ASSERT_GE(ids[r], 0);
          ASSERT_LT(ids[r], vocab);
          if (c.params.temperature == 0) {
            ASSERT_EQ(ids[r], want) << c.name << " vocab " << vocab << " step " << step << " row " << r;
          }
          if (r % 2) {  // the chosen token's logprob, against the host's for the device's token
            const float ref = engine::token_logprob(logits.data<float>() + r * vocab, vocab, ids[r], 0).logprob;
            EXPECT_NEAR(lps[r], ref, 1e-4) << c.name;
          }
          same += ids[r] == want;
          ++total;
          device[r].accept(ids[r]);  // a rare mismatch makes the penalty histories differ from here on
        }
      }
      // Seeded draws: the same token unless rounding moved a boundary (a few per thousand at most).
      EXPECT_GE(same * 100, total * 98) << c.name << " vocab " << vocab << ": " << same << " of " << total;
    }
  }
}

TEST(DeviceSampling, SkippedRowsAndEmptyBatches) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  const Tensor logits = model_like_logits(3, 500, rng);
  std::vector<runtime::SampleRowPlan> plans(3);
  plans[1].skip = true;
  runtime::DeviceSampler ds;
  std::vector<int32_t> ids;
  std::vector<float> lps;
  ds.sample(testing::to_gpu_bf16(logits), 500, plans, {}, nullptr, 0, ids, lps);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1], -1);
  for (int r : {0, 2}) {
    const float* row = logits.data<float>() + r * 500;
    EXPECT_EQ(ids[r], std::max_element(row, row + 500) - row);
  }
  EXPECT_THROW(ds.sample(logits, 500, plans, {}, nullptr, 0, ids, lps), Error);  // host logits
}

// A row shared by a cluster of 2, 4 or 8 blocks: every threshold (top-k, top-p, min-p) and the
// best-first draw is a radix select over integer histograms, so the token must be the one block's
// bit for bit; greedy too. The walk by id (temperature alone) adds its doubles in another order:
// its token changes only where rounding puts u * mass on a boundary, never for these draws. The
// log-probability agrees to float rounding.
TEST(DeviceSampling, ClusterSizeDoesNotChangeTheDraw) {
  SKIP_WITHOUT_GPU();
  namespace kc = kernels::cuda;
  std::mt19937 rng(2024);
  for (int64_t vocab : {int64_t{1000}, int64_t{151936}}) {
    const int64_t rows = 7;
    const Tensor logits = testing::to_gpu_bf16(model_like_logits(rows, vocab, rng));
    std::vector<kc::SampleRow> params(rows);
    for (int64_t r = 0; r < rows; ++r) {
      kc::SampleRow& p = params[r];
      p.u = 0.05 + 0.13 * static_cast<double>(r);
      p.want_logprob = 1;
    }
    params[0].greedy = 1;
    params[1].top_k = 50;
    params[2].top_p = 0.9;
    params[3].top_k = 40, params[3].top_p = 0.8, params[3].min_p = 0.02, params[3].temperature = 1.2;
    params[4].temperature = 0.7;  // the walk by id
    params[5].top_p = 0.95, params[5].temperature = 0.6;
    params[6].top_k = 1;
    Tensor dev_params = Tensor::empty({static_cast<int64_t>(rows * sizeof(kc::SampleRow))}, DType::u8, Device::cuda(0));
    ASSERT_EQ(cudaMemcpy(dev_params.data_ptr(), params.data(), rows * sizeof(kc::SampleRow), cudaMemcpyHostToDevice),
              cudaSuccess);
    const Tensor scratch_l = Tensor::empty({rows, vocab}, DType::f32, Device::cuda(0));
    const Tensor scratch_p = Tensor::empty({rows, vocab}, DType::f32, Device::cuda(0));
    std::vector<int32_t> ids_one;
    std::vector<float> lps_one;
    for (int blocks : {1, 2, 4, 8}) {
      const Tensor ids = testing::poisoned({rows}, DType::i32);
      const Tensor lps = testing::poisoned({rows}, DType::f32);
      kc::sample_rows(logits.data_ptr(), rows, vocab, vocab, static_cast<const kc::SampleRow*>(dev_params.data_ptr()),
                      nullptr, nullptr, scratch_l.data<float>(), scratch_p.data<float>(), ids.data<int32_t>(),
                      lps.data<float>(), loom::cuda::current_stream(0), blocks);
      const std::vector<float> got_lps = testing::host_values(lps);
      std::vector<int32_t> got(rows);
      ASSERT_EQ(cudaMemcpy(got.data(), ids.data_ptr(), rows * sizeof(int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
      if (blocks == 1) {
        ids_one = got, lps_one = got_lps;
        continue;
      }
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(got[r], ids_one[r]) << "vocab " << vocab << " row " << r << ", " << blocks << " blocks a row";
        EXPECT_NEAR(got_lps[r], lps_one[r], 1e-5) << "vocab " << vocab << " row " << r << ", " << blocks << " blocks";
      }
    }
  }
}

// Grammar masks (structured outputs): the device draws only allowed tokens, and greedy rows pick
// the host sampler's token under the same mask.
TEST(DeviceSampling, GrammarMasksRestrictTheDraw) {
  SKIP_WITHOUT_GPU();
  const int64_t vocab = 151936, rows = 8, words = (vocab + 31) / 32;
  std::mt19937 rng(99);
  const Tensor logits = model_like_logits(rows, vocab, rng);
  std::vector<uint32_t> masks;
  std::vector<runtime::SampleRowPlan> plans(rows);
  std::vector<engine::Sampler> host;
  for (int64_t r = 0; r < rows; ++r) {
    engine::SamplingParams p;
    p.temperature = r % 2 ? 0.0 : 0.8;
    p.top_k = r == 2 ? 5 : -1;
    p.seed = 5 + static_cast<uint64_t>(r);
    host.emplace_back(p, std::vector<int32_t>{}, 0);
    std::vector<runtime::LogitEdit> no_edits;
    engine::Sampler(p, {}, 0).plan_device(plans[r], no_edits, vocab);
    if (r == 7) continue;  // unmasked row among masked ones
    plans[r].mask_row = static_cast<int32_t>(masks.size() / words);
    const size_t at = masks.size();
    masks.resize(at + words, 0);
    const int allowed = r == 3 ? 1 : 2000;  // row 3: one token only (a grammar's forced step)
    for (int k = 0; k < allowed; ++k) {
      const uint32_t t = rng() % vocab;
      masks[at + t / 32] |= 1u << (t % 32);
    }
  }
  runtime::DeviceSampler ds;
  std::vector<int32_t> ids;
  std::vector<float> lps;
  ds.sample(testing::to_gpu_bf16(logits), vocab, plans, {}, masks.data(), masks.size(), ids, lps);
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t* m = plans[r].mask_row >= 0 ? masks.data() + plans[r].mask_row * words : nullptr;
    if (m) EXPECT_TRUE((m[ids[r] / 32] >> (ids[r] % 32)) & 1u) << "row " << r << " drew a masked token";
    if (r % 2) {
      EXPECT_EQ(ids[r], host[r].sample(logits.data<float>() + r * vocab, vocab, nullptr, m)) << "row " << r;
    }
  }
}

}  // namespace
}  // namespace loom
