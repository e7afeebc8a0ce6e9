// The prefill expert path on CUTLASS's Hopper grouped GEMM (kernels/cuda/sm90, chosen in
// ops_cuda.cc's moe_experts) against the CPU reference and against loom's own kernels, on routings
// with uneven expert loads: experts with no rows, one expert with a single row, a skewed rest, and
// (expert parallelism) slots routed to other ranks. Also: the path replays in a CUDA graph with
// routings it was not captured with. Needs an sm90 GPU (skipped without one); on one, a build
// without CUTLASS fails here.
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "cuda/cuda_test_util.h"
#include "loom/kernels/cuda/sm90/moe_grouped_gemm.h"
#include "loom/layers/ops.h"
#include "loom/layers/ops_cuda.h"
#include "loom/tensor/allocator.h"

using namespace loom;
using namespace loom::testing;
namespace kc = loom::kernels::cuda;
namespace ops = loom::layers::ops;

namespace {

bool have_sm90() {
  if (!have_gpu()) return false;
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  return major == 9 && minor == 0;
}

#define SKIP_WITHOUT_SM90() \
  if (!have_sm90()) GTEST_SKIP() << "no sm90 GPU"

struct MoeGemmEnv : EnvGuard {
  explicit MoeGemmEnv(const char* value) : EnvGuard("LOOM_MOE_GEMM", value) {}
};

struct Case {
  int t, h, inter, e, k, begin, local;
};

// Routing [t, k] over e experts with uneven loads. Local experts 1 and local-1 get no rows; local
// expert 2 gets exactly one (token t/2); the others are drawn without repeats per token from a
// skewed distribution (weights 1, 1/4, 1/9, ... cycling), so some experts get many rows and some few.
// Weights: positive, each token's summing to 1.
ops::Routing uneven_routing(const Case& c, std::mt19937& rng, std::set<int>* empty_local) {
  const std::set<int> none{c.begin + 1, c.begin + c.local - 1};
  const int single = c.begin + 2;
  std::vector<double> p(c.e);
  for (int i = 0; i < c.e; ++i) {
    const double r = 1 + (i * 7) % 11;
    p[i] = (none.count(i) || i == single) ? 0.0 : 1.0 / (r * r);
  }
  std::discrete_distribution<int> pick(p.begin(), p.end());
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  std::vector<int32_t> ids(static_cast<size_t>(c.t) * c.k);
  std::vector<float> wts(ids.size());
  for (int tok = 0; tok < c.t; ++tok) {
    std::set<int> chosen;
    while (static_cast<int>(chosen.size()) < c.k) chosen.insert(pick(rng));
    if (tok == c.t / 2) {  // the single-row expert replaces this token's first pick
      chosen.erase(chosen.begin());
      chosen.insert(single);
    }
    float sum = 0;
    int j = 0;
    for (int id : chosen) {
      ids[tok * c.k + j] = id;
      wts[tok * c.k + j] = u(rng);
      sum += wts[tok * c.k + j];
      ++j;
    }
    for (j = 0; j < c.k; ++j) wts[tok * c.k + j] /= sum;
  }
  if (empty_local) *empty_local = none;
  return ops::Routing{Tensor::from_floats(wts, {c.t, c.k}), Tensor::from_ints(ids, {c.t, c.k})};
}

ops::Routing to_gpu(const ops::Routing& r) {
  return ops::Routing{r.weights.to(Device::cuda(0)), r.ids.to(Device::cuda(0))};
}

// Shared weights for the cases of one shape (the 128-expert Qwen3-30B-A3B shape is 600M values).
struct Weights {
  Tensor wgu, wd, wgu_gpu, wd_gpu;
};
const Weights& weights_for(const Case& c) {
  static auto* cache = new std::map<std::tuple<int, int, int>, Weights>;  // never freed: no device frees at exit
  auto [it, fresh] = cache->try_emplace({c.h, c.inter, c.local});
  if (fresh) {
    std::mt19937 rng(1000 + c.h + c.inter + c.local);
    it->second.wgu = rand_host({c.local, 2 * c.inter, c.h}, 0.05f, rng);
    it->second.wd = rand_host({c.local, c.h, c.inter}, 0.05f, rng);
    it->second.wgu_gpu = to_gpu_bf16(it->second.wgu);
    it->second.wd_gpu = to_gpu_bf16(it->second.wd);
  }
  return it->second;
}

}  // namespace

TEST(MoeGroupedGemmSm90, AvailableOnThisGpu) {
  SKIP_WITHOUT_SM90();
  EXPECT_TRUE(kc::moe_sm90_available(0)) << "an sm90 GPU, but this build has no CUTLASS grouped GEMM "
                                            "(configure with the flashinfer-python headers)";
  EXPECT_GT(kc::moe_sm90_workspace_bytes(128, 0), 0u);
}

// CUTLASS path (forced, so every size takes it) vs the CPU reference and vs loom's own kernels.
TEST(MoeGroupedGemmSm90, ExpertsMatchTheCpuReferenceAndTheNativeKernels) {
  SKIP_WITHOUT_SM90();
  ASSERT_TRUE(kc::moe_sm90_available(0));
  std::mt19937 rng(21);
  const std::vector<Case> cases = {
      // Qwen3-30B-A3B: hidden 2048, moe_intermediate 768, 128 experts, top-8.
      Case{1, 2048, 768, 128, 8, 0, 128}, Case{17, 2048, 768, 128, 8, 0, 128}, Case{300, 2048, 768, 128, 8, 0, 128},
      Case{2048, 2048, 768, 128, 8, 0, 128},
      // Tiny, and sizes that are not multiples of the 128x256x64 tile (partial N and K tiles).
      Case{33, 64, 32, 8, 2, 0, 8}, Case{130, 200, 72, 6, 3, 0, 6},
      // Expert parallelism: this rank holds experts [4, 12) of 16; other slots add nothing.
      Case{300, 256, 128, 16, 4, 4, 8}};
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "t " << c.t << " h " << c.h << " I " << c.inter << " E " << c.e << " k "
                                      << c.k << " local [" << c.begin << ", +" << c.local << ")");
    const Weights& w = weights_for(c);
    const Tensor x = rand_host({c.t, c.h}, 1.0f, rng);
    std::set<int> empty;
    const ops::Routing r = uneven_routing(c, rng, &empty);
    const Tensor ref = ops::moe_experts(x, r, w.wgu, w.wd, c.begin);
    const std::vector<float> ref_v = ref.to_float_vector();

    const Tensor xg = to_gpu_bf16(x);
    const ops::Routing rg = to_gpu(r);
    std::vector<float> cut, native;
    {
      MoeGemmEnv env("cutlass");
      cut = host_values(ops::moe_experts(xg, rg, w.wgu_gpu, w.wd_gpu, c.begin));
    }
    {
      MoeGemmEnv env("native");
      native = host_values(ops::moe_experts(xg, rg, w.wgu_gpu, w.wd_gpu, c.begin));
    }
    EXPECT_LT(rel_error(cut, ref_v), 2e-2);
    EXPECT_LT(rel_error(cut, native), 2e-2);
    EXPECT_LT(rel_error(native, ref_v), 2e-2);

    // Tokens with no local expert (expert parallelism) come out as exact zeros.
    const std::vector<float> ids = r.ids.to_float_vector();
    for (int tok = 0; tok < c.t; ++tok) {
      bool local = false;
      for (int j = 0; j < c.k; ++j) {
        const int id = static_cast<int>(ids[tok * c.k + j]);
        local = local || (id >= c.begin && id < c.begin + c.local);
      }
      if (local) continue;
      for (int d = 0; d < c.h; ++d) ASSERT_EQ(cut[static_cast<size_t>(tok) * c.h + d], 0.0f) << "token " << tok;
    }
  }
}

// The ping-pong kernel (128x128 tiles, LOOM_MOE_PINGPONG=down or both) computes the cooperative
// kernel's sums: the same shapes, partial tiles and expert-parallel slice as above.
TEST(MoeGroupedGemmSm90, PingpongKernelMatchesTheCooperative) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(24);
  MoeGemmEnv cutlass("cutlass");
  for (const Case& c : {Case{2048, 2048, 768, 128, 8, 0, 128}, Case{17, 2048, 768, 128, 8, 0, 128},
                        Case{130, 200, 72, 6, 3, 0, 6}, Case{300, 256, 128, 16, 4, 4, 8}}) {
    SCOPED_TRACE(::testing::Message() << "t " << c.t << " h " << c.h << " I " << c.inter << " E " << c.e);
    const Weights& w = weights_for(c);
    const Tensor x = rand_host({c.t, c.h}, 1.0f, rng);
    const ops::Routing r = uneven_routing(c, rng, nullptr);
    const std::vector<float> ref = ops::moe_experts(x, r, w.wgu, w.wd, c.begin).to_float_vector();
    const Tensor xg = to_gpu_bf16(x);
    const ops::Routing rg = to_gpu(r);
    std::map<std::string, std::vector<float>> out;
    for (const char* mode : {"none", "down", "both"}) {
      EnvGuard pingpong("LOOM_MOE_PINGPONG", mode);
      out[mode] = host_values(ops::moe_experts(xg, rg, w.wgu_gpu, w.wd_gpu, c.begin));
      EXPECT_LT(rel_error(out[mode], ref), 2e-2) << mode;
    }
    EXPECT_LT(rel_error(out["down"], out["none"]), 1e-2);
    EXPECT_LT(rel_error(out["both"], out["none"]), 1e-2);
  }
  EnvGuard bad("LOOM_MOE_PINGPONG", "sometimes");
  const Case c{64, 256, 128, 16, 4, 0, 16};
  const Weights& w = weights_for(c);
  EXPECT_THROW(ops::moe_experts(to_gpu_bf16(rand_host({c.t, c.h}, 1.0f, rng)), to_gpu(uneven_routing(c, rng, nullptr)),
                                w.wgu_gpu, w.wd_gpu, c.begin),
               Error);
}

// The default choice: CUTLASS from 256 routed slots (32 tokens x top-8 and up), loom's kernels below
// (16 x top-8); seen in the op profile's names.
TEST(MoeGroupedGemmSm90, DefaultDispatchTakesCutlassFrom256Slots) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(22);
  EnvGuard default_gemm("LOOM_MOE_GEMM", nullptr);
  for (const int t : {2048, 32, 16}) {
    SCOPED_TRACE(t);
    const Case c{t, 2048, 768, 128, 8, 0, 128};
    const Weights& w = weights_for(c);
    const Tensor xg = to_gpu_bf16(rand_host({c.t, c.h}, 1.0f, rng));
    const ops::Routing rg = to_gpu(uneven_routing(c, rng, nullptr));
    ops::cuda::set_op_profiling(true);
    const std::vector<float> by_default = host_values(ops::moe_experts(xg, rg, w.wgu_gpu, w.wd_gpu, c.begin));
    ops::cuda::set_op_profiling(false);
    bool cutlass = false;
    for (const auto& op : ops::cuda::take_op_profile()) cutlass = cutlass || op.op.find("(CUTLASS)") != std::string::npos;
    EXPECT_EQ(cutlass, t >= 32);
    MoeGemmEnv env(t >= 32 ? "cutlass" : "native");  // the same kernels when forced: the same bits
    EXPECT_EQ(by_default, host_values(ops::moe_experts(xg, rg, w.wgu_gpu, w.wd_gpu, c.begin)));
  }
}

// Captured once, replayed with other routings (other per-expert row counts, other empty experts):
// the sizes are read on the device, so each replay equals an eager call on its inputs.
TEST(MoeGroupedGemmSm90, ReplaysInACudaGraphWithNewRoutings) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(23);
  const Case c{300, 2048, 768, 128, 8, 0, 128};
  const Weights& w = weights_for(c);
  MoeGemmEnv env("cutlass");
  Tensor xg = to_gpu_bf16(rand_host({c.t, c.h}, 1.0f, rng));
  ops::Routing rg = to_gpu(uneven_routing(c, rng, nullptr));

  loom::cuda::Stream stream;
  loom::cuda::StreamGuard on_stream(stream.get());
  Tensor out;
  cudaGraph_t graph = nullptr;
  {
    // The graph's intermediates live in its pool; the tensors made after this block never alias them.
    GraphPoolGuard in_pool(make_graph_memory_pool());
    (void)ops::moe_experts(xg, rg, w.wgu_gpu, w.wd_gpu, c.begin);  // warm-up outside the capture
    ASSERT_EQ(cudaStreamSynchronize(stream.get()), cudaSuccess);
    ASSERT_EQ(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
    out = ops::moe_experts(xg, rg, w.wgu_gpu, w.wd_gpu, c.begin);
    ASSERT_EQ(cudaStreamEndCapture(stream.get(), &graph), cudaSuccess);
  }
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    // New inputs into the captured buffers (new draws each round; round 2 puts every slot on 8
    // experts, so most groups are empty).
    std::mt19937 r2(100 + round);
    Tensor x_new = to_gpu_bf16(rand_host({c.t, c.h}, 1.0f, r2));
    ops::Routing r_new = to_gpu(uneven_routing(c, r2, nullptr));
    if (round == 2) {
      std::vector<int32_t> ids(static_cast<size_t>(c.t) * c.k);
      for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i % c.k) * 3);
      r_new.ids = Tensor::from_ints(ids, {c.t, c.k}).to(Device::cuda(0));
    }
    for (auto [dst, src] : {std::pair{&xg, &x_new}, {&rg.ids, &r_new.ids}, {&rg.weights, &r_new.weights}})
      ASSERT_EQ(cudaMemcpyAsync(dst->data_ptr(), src->data_ptr(), dst->nbytes(), cudaMemcpyDeviceToDevice,
                                stream.get()),
                cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream.get()), cudaSuccess);
    const std::vector<float> replayed = host_values(out);
    const std::vector<float> eager = host_values(ops::moe_experts(x_new, r_new, w.wgu_gpu, w.wd_gpu, c.begin));
    EXPECT_EQ(replayed, eager);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}
