// Prefill/extend attention on FlashInfer's Hopper kernels (kernels/cuda/flashinfer_prefill.h)
// against the CPU reference (layers::ops on f32), on loom's paged cache with a shuffled page map:
// several sequences with different cached prefixes and chunk lengths (1 token, less than a page,
// many pages), GQA, page size 16, head_dim 128 and 64. Also: the CUDA attention op picks this path
// for prefill (and loom's kernel under LOOM_ATTENTION=native or for decode), and one workspace
// re-plans correctly when batches alternate. Runs only on an sm90 GPU; elsewhere it skips.
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>

#include "cuda/cuda_test_util.h"
#include "cuda/paged_batch.h"
#include "loom/kernels/cuda/flashinfer_prefill.h"
#include "loom/kernels/cuda/kernels.h"
#include "loom/layers/ops.h"
#include "loom/layers/ops_cuda.h"
#include "loom/model/context.h"

using namespace loom;
using namespace loom::testing;
namespace kc = loom::kernels::cuda;
namespace ops = loom::layers::ops;

namespace {

cudaStream_t stream() { return loom::cuda::current_stream(0); }

#define SKIP_WITHOUT_SM90()                                                                             \
  do {                                                                                                  \
    if (!::loom::testing::have_gpu()) GTEST_SKIP() << "no GPU";                                         \
    int major_ = 0, minor_ = 0;                                                                         \
    ASSERT_EQ(cudaDeviceGetAttribute(&major_, cudaDevAttrComputeCapabilityMajor, 0), cudaSuccess);      \
    ASSERT_EQ(cudaDeviceGetAttribute(&minor_, cudaDevAttrComputeCapabilityMinor, 0), cudaSuccess);      \
    if (major_ != 9 || minor_ != 0)                                                                     \
      GTEST_SKIP() << "FlashInfer's Hopper kernels need sm_90; GPU 0 is sm_" << major_ << minor_;      \
    ASSERT_TRUE(kc::flashinfer_prefill_built())                                                         \
        << "an sm90 GPU but a build without FlashInfer: run scripts/setup.sh and reconfigure";          \
  } while (0)

// One batch on both sides: the same (bf16-rounded) random cache content, new q/k/v, the CPU
// reference output (which also writes the new K/V into the CPU cache).
struct Batch {
  int hq = 0, hk = 0, d = 0, page_size = 0;
  KvBuffers cpu_kv, gpu_kv;
  Tensor q, k, v, ref;  // host f32
  Tensor qg, kg, vg;    // device bf16
  layers::ForwardContext gctx;
  int64_t tokens = 0;
};

// On the heap: the contexts point at the batch's own KV buffers, so it never moves.
std::unique_ptr<const Batch> make_batch(const std::vector<std::pair<int, int>>& seqs, int hq, int hk, int d,
                                        int page_size, std::mt19937& rng) {
  auto owned = std::make_unique<Batch>();
  Batch& b = *owned;
  b.hq = hq, b.hk = hk, b.d = d, b.page_size = page_size;
  const int64_t pages = pages_for(seqs, page_size), slots = pages * page_size;
  const Tensor kc_host = rand_host({slots, hk, d}, 1.0f, rng), vc_host = rand_host({slots, hk, d}, 1.0f, rng);
  b.cpu_kv.page_size = b.gpu_kv.page_size = page_size;
  b.cpu_kv.k.push_back(kc_host.clone());
  b.cpu_kv.v.push_back(vc_host.clone());
  b.gpu_kv.k.push_back(to_gpu_bf16(kc_host));
  b.gpu_kv.v.push_back(to_gpu_bf16(vc_host));
  const model::ForwardBatch batch = shuffled_page_batch(seqs, pages, page_size, rng);
  for (const auto& seq : seqs) b.tokens += seq.second;
  b.q = rand_host({b.tokens, hq, d}, 1.0f, rng);
  b.k = rand_host({b.tokens, hk, d}, 1.0f, rng);
  b.v = rand_host({b.tokens, hk, d}, 1.0f, rng);
  const layers::ForwardContext cctx = model::make_context(batch, b.cpu_kv, Device::cpu());
  b.gctx = model::make_context(batch, b.gpu_kv, Device::cuda(0));
  ops::AttentionParams params;
  params.scale = 1.0f / std::sqrt(static_cast<float>(d));
  b.ref = ops::attention(b.q, b.k, b.v, 0, params, cctx);
  b.qg = to_gpu_bf16(b.q);
  b.kg = to_gpu_bf16(b.k);
  b.vg = to_gpu_bf16(b.v);
  return owned;
}

kc::PagedKvArgs paged_args(const Batch& b) {
  return {b.gpu_kv.k[0].data_ptr(),
          b.gpu_kv.v[0].data_ptr(),
          b.gctx.page_table.data<int32_t>(),
          b.gctx.token_starts.data<int32_t>(),
          b.gctx.start_pos.data<int32_t>(),
          b.gctx.num_seqs,
          b.gctx.max_pages,
          b.page_size,
          b.hk,
          b.d};
}

// Writes the batch's K/V, plans on `ws` and runs FlashInfer's kernel; returns the output.
std::vector<float> run_flashinfer(kc::FlashInferPrefillWorkspace& ws, const Batch& b) {
  const kc::PagedKvArgs kv = paged_args(b);
  kc::write_kv(kv, b.kg.data_ptr(), b.vg.data_ptr(), b.gctx.positions.data<int32_t>(), b.tokens, stream());
  EXPECT_TRUE(ws.plan(b.gctx.h_token_starts.data(), b.gctx.h_start_pos.data(), b.gctx.num_seqs, b.gctx.max_pages,
                      b.page_size, b.hq, b.hk, b.d, stream()));
  Tensor out = poisoned({b.tokens, b.hq, b.d}, DType::bf16);
  ws.run(kv, b.qg.data_ptr(), out.data_ptr(), b.tokens, b.hq, 1.0f / std::sqrt(static_cast<float>(b.d)), stream());
  return host_values(out);
}

// The mixes of a prefill step: a 1-token chunk, chunks shorter than a page, chunks over many pages,
// with and without a cached prefix (the extend case), prefixes that end mid-page.
const std::vector<std::pair<int, int>> kMixed = {{0, 1},   {5, 33},  {0, 130}, {70, 7},  {0, 67},
                                                 {17, 1},  {300, 200}, {0, 16}, {16, 16}, {1000, 129}};

}  // namespace

TEST(FlashInferPrefill, MatchesTheCpuReferenceGqaHeadDim128) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(14);
  kc::FlashInferPrefillWorkspace ws;
  for (auto [hq, hk] : {std::pair{32, 4}, {8, 8}, {16, 1}}) {
    const auto b_owned = make_batch(kMixed, hq, hk, 128, 16, rng);
    const Batch& b = *b_owned;
    ASSERT_TRUE(kc::flashinfer_prefill_supports(0, hq, hk, 128));
    EXPECT_LT(rel_error(run_flashinfer(ws, b), b.ref.to_float_vector()), kBf16Kernel) << "hq " << hq << " hk " << hk;
    EXPECT_LT(rel_error(host_values(b.gpu_kv.k[0]), b.cpu_kv.k[0].to_float_vector()), 1e-6) << "K cache written";
  }
}

TEST(FlashInferPrefill, MatchesTheCpuReferenceHeadDim64AndOtherPageSizes) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(15);
  kc::FlashInferPrefillWorkspace ws;
  const auto b64_owned = make_batch(kMixed, 8, 2, 64, 16, rng);
  const Batch& b64 = *b64_owned;
  EXPECT_LT(rel_error(run_flashinfer(ws, b64), b64.ref.to_float_vector()), kBf16Kernel) << "head_dim 64";
  for (int page_size : {1, 64}) {
    const auto b_owned = make_batch({{0, 300}, {45, 3}, {129, 1}}, 32, 4, 128, page_size, rng);
    const Batch& b = *b_owned;
    EXPECT_LT(rel_error(run_flashinfer(ws, b), b.ref.to_float_vector()), kBf16Kernel) << "page size " << page_size;
  }
}

TEST(FlashInferPrefill, OneLongSequenceEqualsLoomsKernel) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(16);
  kc::FlashInferPrefillWorkspace ws;
  const auto b_owned = make_batch({{0, 1024}}, 32, 4, 128, 16, rng);
  const Batch& b = *b_owned;
  const std::vector<float> fi = run_flashinfer(ws, b);
  EXPECT_LT(rel_error(fi, b.ref.to_float_vector()), kBf16Kernel);
  Tensor out = poisoned({b.tokens, b.hq, b.d}, DType::bf16);
  kc::attention(paged_args(b), b.qg.data_ptr(), out.data_ptr(), b.tokens, b.hq, 1.0f / std::sqrt(128.0f), b.tokens,
                1, nullptr, stream());
  EXPECT_LT(rel_error(fi, host_values(out)), kBf16Kernel) << "against loom's own kernel";
}

TEST(FlashInferPrefill, AWorkspaceReplansWhenBatchesAlternate) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(17);
  kc::FlashInferPrefillWorkspace ws;
  const auto a_owned = make_batch({{0, 40}, {8, 300}}, 32, 4, 128, 16, rng);
  const Batch& a = *a_owned;
  const auto b_owned = make_batch({{100, 1}, {0, 700}, {3, 3}}, 32, 4, 128, 16, rng);
  const Batch& b = *b_owned;
  for (int round = 0; round < 2; ++round) {
    EXPECT_LT(rel_error(run_flashinfer(ws, a), a.ref.to_float_vector()), kBf16Kernel) << "a, round " << round;
    EXPECT_LT(rel_error(run_flashinfer(ws, b), b.ref.to_float_vector()), kBf16Kernel) << "b, round " << round;
    EXPECT_LT(rel_error(run_flashinfer(ws, b), b.ref.to_float_vector()), kBf16Kernel) << "b again (same plan)";
  }
}

// Fresh prompts (no cached keys) on the ragged kernel, keys read from the step's k/v rows: the same
// attention as the paged kernel over the cache, for both head sizes; a plan of one kind does not
// run the other.
TEST(FlashInferPrefill, RaggedKernelMatchesThePagedOneOnFreshPrompts) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(19);
  kc::FlashInferPrefillWorkspace ws;
  for (auto [hq, hk, d] : {std::tuple{32, 4, 128}, {8, 2, 64}, {16, 16, 128}}) {
    SCOPED_TRACE(::testing::Message() << "hq " << hq << " hk " << hk << " d " << d);
    const auto b_owned = make_batch({{0, 1}, {0, 33}, {0, 130}, {0, 67}, {0, 300}, {0, 16}}, hq, hk, d, 16, rng);
    const Batch& b = *b_owned;
    const std::vector<float> paged = run_flashinfer(ws, b);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    Tensor out = poisoned({b.tokens, hq, d}, DType::bf16);
    EXPECT_THROW(ws.run_ragged(b.qg.data_ptr(), b.kg.data_ptr(), b.vg.data_ptr(), out.data_ptr(), b.tokens, hq, hk,
                               scale, stream()),
                 Error);
    ASSERT_TRUE(ws.plan_ragged(b.gctx.h_token_starts.data(), b.gctx.num_seqs, hq, hk, d, stream()));
    ws.run_ragged(b.qg.data_ptr(), b.kg.data_ptr(), b.vg.data_ptr(), out.data_ptr(), b.tokens, hq, hk, scale,
                  stream());
    const std::vector<float> ragged = host_values(out);
    EXPECT_LT(rel_error(ragged, b.ref.to_float_vector()), kBf16Kernel);
    EXPECT_LT(rel_error(ragged, paged), kBf16Kernel);
    EXPECT_THROW(ws.run(paged_args(b), b.qg.data_ptr(), out.data_ptr(), b.tokens, hq, scale, stream()), Error);
  }
}

TEST(FlashInferPrefill, TheAttentionOpTakesItForPrefillOnly) {
  SKIP_WITHOUT_SM90();
  std::mt19937 rng(18);
  const auto run_op = [](const Batch& b, std::string* op) {
    ops::AttentionParams params;
    params.scale = 1.0f / std::sqrt(static_cast<float>(b.d));
    ops::cuda::set_op_profiling(true);
    const Tensor out = ops::attention(b.qg, b.kg, b.vg, 0, params, b.gctx);
    ops::cuda::set_op_profiling(false);
    op->clear();
    for (const ops::cuda::OpTime& t : ops::cuda::take_op_profile())
      if (t.op.rfind("attention (", 0) == 0) *op = t.op;
    return host_values(out);
  };
  // The op is accurate and ran as `name`.
  const auto expect_op = [&](const Batch& b, const char* name) {
    std::string op;
    EXPECT_LT(rel_error(run_op(b, &op), b.ref.to_float_vector()), kBf16Kernel);
    EXPECT_EQ(op, name);
  };
  EnvGuard default_attention("LOOM_ATTENTION", nullptr);
  const auto prefill = make_batch(kMixed, 32, 4, 128, 16, rng);
  expect_op(*prefill, "attention (prefill, FlashInfer)");
  {
    EnvGuard native("LOOM_ATTENTION", "native");
    expect_op(*prefill, "attention (prefill)");
  }

  // Fresh prompts read their keys from the step's rows (the ragged kernel), unless turned off.
  const auto fresh = make_batch({{0, 200}, {0, 7}}, 32, 4, 128, 16, rng);
  expect_op(*fresh, "attention (prefill, FlashInfer ragged)");
  {
    EnvGuard paged("LOOM_FLASHINFER_RAGGED", "0");
    expect_op(*fresh, "attention (prefill, FlashInfer)");
  }

  const auto decode = make_batch({{0, 1}, {300, 1}, {77, 1}}, 32, 4, 128, 16, rng);
  expect_op(*decode, "attention (decode, split keys)");

  const auto tiny = make_batch({{0, 9}, {4, 5}}, 4, 2, 32, 16, rng);  // a head size not instantiated
  expect_op(*tiny, "attention (prefill)");
}
