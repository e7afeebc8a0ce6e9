// The decoder's RMSNorm and residual add folded into the decode kernels (ops::Normed,
// ops::linear_add_, ops::moe_experts_add_, DecoderTrunk::hidden_residual): each folded op equals the
// unfolded ops it replaces bit for bit, at every decode row count and at the sizes where it falls
// back; and every checkpoint's decode gives the same logits and tokens folded as unfolded.
#include <map>
#include <random>
#include <string>

#include "cuda/cuda_test_util.h"
#include "loom/kernels/cuda/kernels.h"
#include "loom/layers/ops.h"
#include "loom/layers/ops_cuda.h"
#include "loom/runtime/generate.h"
#include "loom/runtime/model_runner.h"
#include "model/reference.h"

using namespace loom;
using namespace loom::testing;
namespace kc = loom::kernels::cuda;
namespace ops = loom::layers::ops;

namespace {

// A residual stream of `rows` rows whose scale varies by row (the norm's 1 / RMS differs).
Tensor residual_rows(int64_t rows, int64_t hidden, std::mt19937& rng) {
  Tensor r = rand_host({rows, hidden}, 1.0f, rng);
  float* p = r.data<float>();
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < hidden; ++c) p[i * hidden + c] = bf16_to_f32(f32_to_bf16(p[i * hidden + c] * (0.25f + i)));
  return to_gpu_bf16(r);
}

// K 8,200 is past the 16-byte norm's 8,192 and 12 rows past the GEMV's 8: ops normalize first.
TEST(ResidualFold, GemvFoldsTheRmsNormBitForBit) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(41);
  for (int m : {1, 3, 8, 12})
    for (auto [k, n] : {std::pair{64, 40}, {1000, 513}, {2048, 5120}, {8192, 77}, {8200, 33}}) {
      SCOPED_TRACE(::testing::Message() << "m " << m << " K " << k << " N " << n);
      const Tensor x = residual_rows(m, k, rng), norm = to_gpu_bf16(rand_host({k}, 1.0f, rng));
      const Tensor w0 = to_gpu_bf16(rand_host({n, k}, 0.1f, rng)), w1 = to_gpu_bf16(rand_host({24, k}, 0.1f, rng));
      const std::vector<Tensor> folded = ops::linears(ops::Normed{x, norm, 1e-6f}, {&w0, &w1});
      const std::vector<Tensor> plain = ops::linears(ops::rms_norm(x, norm, 1e-6f), {&w0, &w1});
      ASSERT_EQ(folded.size(), 2u);
      for (int j = 0; j < 2; ++j) EXPECT_EQ(host_values(folded[j]), host_values(plain[j])) << "weight " << j;
      EXPECT_EQ(kc::row_norm_applies(k, norm.data_ptr()), k <= 8192);
    }
}

TEST(ResidualFold, GemvAddsIntoTheResidualAsLinearThenAdd) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(42);
  for (int m : {1, 5, 8, 12})
    for (auto [k, n] : {std::pair{4096, 2048}, {72, 64}, {1000, 1000}}) {
      SCOPED_TRACE(::testing::Message() << "m " << m << " K " << k << " N " << n);
      const Tensor x = to_gpu_bf16(rand_host({m, k}, 1.0f, rng)), w = to_gpu_bf16(rand_host({n, k}, 0.1f, rng));
      const Tensor start = residual_rows(m, n, rng);
      Tensor folded = start.clone(), plain = start.clone();
      ops::linear_add_(folded, x, w);
      ops::add_(plain, ops::linear(x, w));
      EXPECT_EQ(host_values(folded), host_values(plain));
      EXPECT_NE(host_values(folded), host_values(start));
    }
}

// The router normalizes its input itself and hands the normalized rows to the experts.
TEST(ResidualFold, RouterFoldsTheRmsNormAndReturnsTheNormalizedRows) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(43);
  for (auto [m, e, h, k] : {std::tuple{1, 128, 2048, 8}, {3, 60, 1000, 4}, {8, 8, 64, 2}, {12, 128, 256, 8}}) {
    SCOPED_TRACE(::testing::Message() << "m " << m << " E " << e << " H " << h);
    const Tensor x = residual_rows(m, h, rng), norm = to_gpu_bf16(rand_host({h}, 1.0f, rng));
    const Tensor w = to_gpu_bf16(rand_host({e, h}, 0.1f, rng));
    Tensor normed, logits, ref_logits;
    const ops::Routing folded = ops::linear_route_topk_softmax(ops::Normed{x, norm, 1e-6f}, w, k, true, normed, &logits);
    const Tensor ref_normed = ops::rms_norm(x, norm, 1e-6f);
    const ops::Routing ref = ops::linear_route_topk_softmax(ref_normed, w, k, true, &ref_logits);
    EXPECT_EQ(host_values(normed), host_values(ref_normed));
    EXPECT_EQ(host_values(logits), host_values(ref_logits));
    EXPECT_EQ(host_values(folded.ids), host_values(ref.ids));
    EXPECT_EQ(host_values(folded.weights), host_values(ref.weights));
  }
}

TEST(ResidualFold, ExpertsAddIntoTheResidualAsExpertsThenAdd) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(44);
  struct Case { int t, h, inter, e, k, begin, local; };
  for (const Case c : {Case{1, 2048, 768, 128, 8, 0, 128}, Case{5, 72, 40, 12, 3, 6, 6}, Case{8, 64, 32, 8, 2, 0, 8},
                       Case{20, 64, 32, 8, 2, 0, 8}}) {
    SCOPED_TRACE(::testing::Message() << "t " << c.t << " h " << c.h << " E " << c.e);
    const Device g = Device::cuda(0);
    const Tensor x = to_gpu_bf16(rand_host({c.t, c.h}, 1.0f, rng));
    const Tensor wgu = to_gpu_bf16(rand_host({c.local, 2 * c.inter, c.h}, 0.1f, rng));
    const Tensor wd = to_gpu_bf16(rand_host({c.local, c.h, c.inter}, 0.1f, rng));
    const ops::Routing host = ops::route_topk_softmax(rand_host({c.t, c.e}, 2.0f, rng), c.k, true);
    const ops::Routing r{host.weights.to(g), host.ids.to(g)};
    const Tensor start = residual_rows(c.t, c.h, rng);
    Tensor folded = start.clone(), plain = start.clone();
    ops::moe_experts_add_(folded, x, r, wgu, wd, c.begin);
    ops::add_(plain, ops::moe_experts(x, r, wgu, wd, c.begin));
    EXPECT_EQ(host_values(folded), host_values(plain));
  }
}

// Whole checkpoints, through the runner the CLI uses (CUDA graphs up to 8 sequences): prompts
// short enough to be decode-sized steps, then greedy decoding, folded against unfolded
// (FoldResidualNormsOverride; each runner captures its graphs under its own setting).
class ResidualFoldModels : public ::testing::TestWithParam<std::string> {};

struct Decoded {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

// A small runner on GPU 0: CUDA graphs up to 8 sequences, or none.
std::unique_ptr<runtime::Runner> gpu_runner(const std::string& dir, bool graphs) {
  runtime::RunnerOptions o;
  o.model_path = dir;
  o.device = Device::cuda(0);
  o.max_total_tokens = 512;
  o.mem_fraction_static = 0.3;
  o.cuda_graph_max_bs = 8;
  o.disable_cuda_graph = !graphs;
  return runtime::create_runner(o);
}

Decoded decode_checkpoint(const std::string& dir, bool fold) {
  const ops::FoldResidualNormsOverride mode(fold);
  auto runner = gpu_runner(dir, true);
  Decoded d;
  for (const std::vector<int32_t>& prompt : {std::vector<int32_t>{7}, {3, 1, 4, 1, 5}, {2, 7, 1, 8, 2, 8, 1, 8}})
    d.logits.push_back(host_values(runtime::prompt_logits(*runner, prompt, true)));
  d.tokens = runtime::generate_greedy(*runner, {11, 5, 9}, 12);
  return d;
}

// The ops of one eager decode-sized step (a 1-token prompt): calls by name.
std::map<std::string, int64_t> eager_step_ops(const std::string& dir, bool fold) {
  const ops::FoldResidualNormsOverride mode(fold);
  auto runner = gpu_runner(dir, false);
  ops::cuda::set_op_profiling(true);
  runtime::prompt_logits(*runner, {7}, false);
  std::map<std::string, int64_t> calls;
  for (const ops::cuda::OpTime& t : ops::cuda::take_op_profile()) calls[t.op] = t.calls;
  ops::cuda::set_op_profiling(false);
  return calls;
}

int64_t total_calls(const std::map<std::string, int64_t>& calls) {
  int64_t n = 0;
  for (const auto& [op, c] : calls) n += c;
  return n;
}

TEST_P(ResidualFoldModels, DecodeGivesTheSameLogitsAndTokensFoldedAsUnfolded) {
  SKIP_WITHOUT_GPU();
  const std::string dir = model_dir(GetParam());
  // Qwen3 and Mixtral fold (no norm launch between sublayers); gpt-oss (biased projections and
  // experts) and DeepSeek-V2 (latent attention) keep the unfolded trunk.
  const bool folds = GetParam().find("gpt-oss") == std::string::npos && GetParam().find("deepseek") == std::string::npos;
  std::map<std::string, int64_t> plain_ops = eager_step_ops(dir, false), folded_ops = eager_step_ops(dir, true);
  EXPECT_GT(plain_ops["add_rms_norm"], 0);
  EXPECT_EQ(folded_ops["add_rms_norm"] == 0, folds);
  EXPECT_EQ(folded_ops["linear + residual add (GEMV)"] > 0, folds);
  // Folded, exactly the add + RMSNorm launches are gone: nothing else was added.
  if (folds) EXPECT_EQ(total_calls(folded_ops), total_calls(plain_ops) - plain_ops["add_rms_norm"]);
  const Decoded unfolded = decode_checkpoint(dir, false), folded = decode_checkpoint(dir, true);
  ASSERT_EQ(folded.logits.size(), unfolded.logits.size());
  for (size_t i = 0; i < folded.logits.size(); ++i) EXPECT_EQ(folded.logits[i], unfolded.logits[i]) << "prompt " << i;
  EXPECT_EQ(folded.tokens, unfolded.tokens);
  EXPECT_EQ(folded.tokens.size(), 12u);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ResidualFoldModels, ::testing::ValuesIn(gpu_checkpoints()),
                         [](const auto& info) { return checkpoint_test_name(info.param); });

}  // namespace
