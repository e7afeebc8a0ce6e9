// Prefill and extend steps through piecewise CUDA graphs (runtime/piecewise_graph_runner.h)
// against the same steps run eagerly, on every GPU family; and the graphs' memory counted in the
// KV budget.
#include <algorithm>
#include <array>

#include "cuda/cuda_test_util.h"
#include "loom/layers/ops.h"
#include "loom/runtime/generate.h"
#include "loom/runtime/model_runner.h"
#include "loom/runtime/piecewise_graph_runner.h"
#include "loom/tensor/allocator.h"
#include "model/reference.h"

using namespace loom;
using loom::testing::model_dir;

namespace {

std::unique_ptr<runtime::Runner> runner_for(const std::string& name, bool piecewise, int64_t max_tokens = 96) {
  runtime::RunnerOptions o;
  o.model_path = model_dir(name);
  o.device = Device::cuda(0);
  o.max_total_tokens = 4096;
  o.mem_fraction_static = 0.5;
  o.cuda_graph_max_bs = 8;
  o.disable_piecewise_cuda_graph = !piecewise;
  o.piecewise_cuda_graph_max_tokens = max_tokens;
  return runtime::create_runner(o);
}

std::vector<int32_t> some_tokens(int n, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(3 + (salt * 131 + i * 17) % 250);
  return t;
}

// The rows of f32 host logits [R, V].
std::vector<std::vector<float>> rows_of(const Tensor& logits) {
  const std::vector<float> all = logits.to_float_vector();
  const int64_t v = logits.size(1);
  std::vector<std::vector<float>> rows;
  for (int64_t r = 0; r < logits.size(0); ++r) rows.emplace_back(all.begin() + r * v, all.begin() + (r + 1) * v);
  return rows;
}

}  // namespace

TEST(PiecewiseGraphs, BucketsPadAQuarterAtMost) {
  for (int64_t max : {1, 7, 64, 100, 2048, 3000}) {
    const std::vector<int64_t> b = runtime::piecewise_graph_buckets(max);
    ASSERT_FALSE(b.empty());
    EXPECT_EQ(b.back(), max);
    for (size_t i = 1; i < b.size(); ++i) EXPECT_GT(b[i], b[i - 1]);
    for (int64_t t = 1; t <= max; ++t) {
      const int64_t bucket = *std::lower_bound(b.begin(), b.end(), t);
      if (t > 64) EXPECT_LE(bucket * 4, t * 5) << "max " << max << ", " << t << " tokens padded to " << bucket;
      else EXPECT_LT(bucket - t, 8) << "max " << max << ", " << t << " tokens padded to " << bucket;
    }
  }
  EXPECT_EQ(runtime::piecewise_graph_buckets(2048).size(), 28u);  // capture cost: 28 graphs of pieces
}

// Steps of several sequences: a prefill whose token count is a captured size (the graph then
// computes what eager does, bit for bit), an extend of those sequences plus a new one with every
// position's logits (padded to a larger size), one past the largest graph (eager), then three
// decode steps over the K/V those steps wrote. Padding changes the GEMMs' row counts, so padded steps agree within bf16 rounding.
class PiecewiseFamilyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PiecewiseFamilyTest, PrefillAndExtendMatchEagerSteps) {
  SKIP_WITHOUT_GPU();
  auto eager = runner_for(GetParam(), false);
  auto graphed = runner_for(GetParam(), true);
  std::array<runtime::Runner*, 2> runners{eager.get(), graphed.get()};
  std::vector<std::vector<float>> logits[2][4];
  for (int r = 0; r < 2; ++r) {
    runtime::Runner& run = *runners[r];
    std::vector<std::vector<int32_t>> pages;
    for (int s = 0; s < 4; ++s) {
      auto p = run.kv_pool().allocate(run.kv_pool().pages_for_tokens(200));
      ASSERT_TRUE(p);
      pages.push_back(*p);
    }
    model::ForwardBatch a;  // 10 + 22 = 32 tokens: a captured size
    a.seqs.push_back({some_tokens(10, 1), 0, pages[0], false});
    a.seqs.push_back({some_tokens(22, 2), 0, pages[1], false});
    logits[r][0] = rows_of(run.forward(a));
    model::ForwardBatch b;  // 5 + 9 + 13 = 27 tokens, padded to 32; 1 + 1 + 13 logits rows
    b.seqs.push_back({some_tokens(5, 3), 10, pages[0], false});
    b.seqs.push_back({some_tokens(9, 4), 22, pages[1], false});
    b.seqs.push_back({some_tokens(13, 5), 0, pages[2], true});
    logits[r][1] = rows_of(run.forward(b));
    model::ForwardBatch c;  // 120 tokens: past the largest graph (96), eager in both
    c.seqs.push_back({some_tokens(120, 6), 0, pages[3], false});
    logits[r][2] = rows_of(run.forward(c));
    for (int step = 0; step < 3; ++step) {  // decode (graphs) over the K/V the steps above wrote
      model::ForwardBatch d;
      d.seqs.push_back({{static_cast<int32_t>(7 + step)}, 15 + step, pages[0], false});
      d.seqs.push_back({{static_cast<int32_t>(9 + step)}, 31 + step, pages[1], false});
      d.seqs.push_back({{static_cast<int32_t>(11 + step)}, 13 + step, pages[2], false});
      d.seqs.push_back({{static_cast<int32_t>(13 + step)}, 120 + step, pages[3], false});
      for (auto& row : rows_of(run.forward(d))) logits[r][3].push_back(row);
    }
    for (auto& p : pages) run.kv_pool().free(p);
    EXPECT_EQ(run.kv_pool().num_free(), run.kv_pool().num_pages());
  }
  ASSERT_EQ(logits[1][0].size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(logits[1][0][i], logits[0][0][i]) << "exact-size step, row " << i;
  ASSERT_EQ(logits[1][1].size(), 15u);
  ASSERT_EQ(logits[1][2].size(), 1u);
  ASSERT_EQ(logits[1][3].size(), 12u);
  double worst = 0;
  for (int step = 1; step < 4; ++step)
    for (size_t i = 0; i < logits[1][step].size(); ++i) {
      const double e = loom::testing::scaled_error(logits[1][step][i], logits[0][step][i]);
      worst = std::max(worst, e);
      EXPECT_LT(e, 0.05) << "step " << step << ", row " << i;
    }
  std::printf("%s: worst scaled error of padded piecewise steps against eager %.4g\n", GetParam().c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PiecewiseFamilyTest, ::testing::ValuesIn(loom::testing::gpu_checkpoints()),
                         [](const auto& info) { return loom::testing::checkpoint_test_name(info.param); });

// The pieces are captured before the KV pool is sized, so their memory comes out of its budget:
// with them, fewer KV tokens fit; without them, the same number as before.
TEST(PiecewiseGraphs, GraphMemoryComesOutOfTheKvBudget) {
  SKIP_WITHOUT_GPU();
  const auto kv_tokens = [](bool piecewise, bool prefill) {
    runtime::RunnerOptions o;
    o.model_path = model_dir("tiny-qwen3-moe");
    o.device = Device::cuda(0);
    o.mem_fraction_static = 0.3;
    o.disable_piecewise_cuda_graph = !piecewise;
    o.piecewise_cuda_graph_max_tokens = 4096;
    int64_t tokens = 0;
    {
      auto r = runtime::create_runner(o);
      tokens = r->kv_pool().num_pages() * r->kv_pool().page_size();
      if (prefill) (void)runtime::prompt_logits(*r, some_tokens(300, 7), false);
    }
    loom::cuda::synchronize();
    release_cached_device_memory(Device::cuda(0));
    return tokens;
  };
  // A first runner with the graphs and a prefill makes what lasts past a runner: the thread's
  // attention workspaces and the kernels CUDA loads on first use (the graphs' GEMM shapes).
  (void)kv_tokens(true, true);
  const int64_t without = kv_tokens(false, false), with = kv_tokens(true, false), again = kv_tokens(false, false);
  std::printf("KV tokens at --mem-fraction-static 0.3: %lld without piecewise graphs, %lld with, %lld without again\n",
              static_cast<long long>(without), static_cast<long long>(with), static_cast<long long>(again));
  EXPECT_LT(with, without);
  EXPECT_EQ(again, without) << "a runner's graph memory outlived it";
}

// Padding rows of a piecewise step route to no expert (ids -1); the real rows keep theirs. The CPU
// and the GPU agree, and the GPU reads the count on the device (as a graph replay does).
TEST(PiecewiseGraphs, PaddingTokensRouteToNoExpert) {
  std::vector<int32_t> ids(5 * 3);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i % 7);
  const auto expected = [&](int valid) {
    std::vector<int32_t> e = ids;
    for (size_t i = static_cast<size_t>(valid) * 3; i < e.size(); ++i) e[i] = -1;
    return e;
  };
  for (int valid : {0, 2, 5}) {
    SCOPED_TRACE(valid);
    layers::ops::Routing cpu{Tensor::zeros({5, 3}, DType::f32), Tensor::from_ints(ids, {5, 3})};
    layers::ops::drop_routes_past(cpu, Tensor::from_ints({valid}, {1}));
    const Tensor got = cpu.ids;
    EXPECT_EQ(std::vector<int32_t>(got.data<int32_t>(), got.data<int32_t>() + 15), expected(valid));
    if (!loom::testing::have_gpu()) continue;
    layers::ops::Routing gpu{Tensor::zeros({5, 3}, DType::f32, Device::cuda(0)),
                             Tensor::from_ints(ids, {5, 3}).to(Device::cuda(0))};
    layers::ops::drop_routes_past(gpu, Tensor::from_ints({valid}, {1}).to(Device::cuda(0)));
    loom::cuda::synchronize();
    const Tensor back = gpu.ids.to(Device::cpu());
    EXPECT_EQ(std::vector<int32_t>(back.data<int32_t>(), back.data<int32_t>() + 15), expected(valid));
  }
}
