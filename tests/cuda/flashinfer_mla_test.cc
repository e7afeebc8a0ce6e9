// DeepSeek's latent attention (512 + 64) on FlashInfer's MLA kernel (kernels/cuda/flashinfer_mla.h)
// against the CPU reference (layers::ops::attention on f32 with the value = the key's latent), on
// loom's paged cache with a shuffled page map: prefill chunks with and without a cached prefix,
// decode rows, 16 and 128 heads, page sizes 16 and 64; a batch split over several schedules; the
// attention op choosing the kernel; and a CUDA graph replayed over new key counts after its replay
// prep re-plans. Runs only on an sm90 GPU; elsewhere it skips.
#include <memory>
#include <numeric>

#include "cuda/cuda_test_util.h"
#include "cuda/paged_batch.h"
#include "loom/kernels/cuda/flashinfer_mla.h"
#include "loom/kernels/cuda/kernels.h"
#include "loom/layers/ops.h"
#include "loom/layers/ops_cuda.h"
#include "loom/model/context.h"
#include "loom/tensor/allocator.h"

using namespace loom;
using namespace loom::testing;
namespace kc = loom::kernels::cuda;
namespace ops = loom::layers::ops;

namespace {

constexpr int64_t kLatent = kc::kMlaLatent, kRope = kc::kMlaRope, kKey = kLatent + kRope;

cudaStream_t stream() { return loom::cuda::current_stream(0); }

#define SKIP_WITHOUT_MLA_KERNEL()                                                                  \
  do {                                                                                             \
    if (!::loom::testing::have_gpu()) GTEST_SKIP() << "no GPU";                                    \
    if (!kc::flashinfer_mla_supports(0, kLatent, kRope))                                           \
      GTEST_SKIP() << "GPU 0 does not run FlashInfer's MLA kernel (sm_90, a build with FlashInfer)"; \
  } while (0)

// The key rows [k_pe | c] and the value c = the key's last 512 dims, as MlaAttention stores them.
Tensor value_of(const Tensor& key_rows) {  // [N, 1, 576] host f32 -> [N, 1, 512]
  const int64_t n = key_rows.size(0);
  Tensor v = Tensor::empty({n, 1, kLatent}, DType::f32);
  for (int64_t i = 0; i < n; ++i)
    std::copy(key_rows.data<float>() + i * kKey + kRope, key_rows.data<float>() + (i + 1) * kKey,
              v.data<float>() + i * kLatent);
  return v;
}

struct Batch {
  int64_t heads = 0, page_size = 0, tokens = 0;
  float scale = 0;
  KvBuffers cpu_kv, gpu_kv;
  Tensor q, k, ref;  // host f32
  Tensor qg, kg, vg;  // device bf16
  layers::ForwardContext gctx;
  std::vector<int32_t> kv_lens;
};

// seqs: (cached prefix, new tokens) per sequence.
std::unique_ptr<Batch> make_batch(const std::vector<std::pair<int, int>>& seqs, int64_t heads, int64_t page_size,
                                  std::mt19937& rng) {
  auto owned = std::make_unique<Batch>();
  Batch& b = *owned;
  b.heads = heads, b.page_size = page_size;
  b.scale = 0.07f;
  const int64_t pages = pages_for(seqs, page_size), slots = pages * page_size;
  // bf16-rounded on both sides, so the reference sees the values the kernel reads.
  const Tensor kc_host = to_gpu_bf16(rand_host({slots, 1, kKey}, 1.0f, rng)).to(Device::cpu()).to(DType::f32);
  b.cpu_kv.page_size = b.gpu_kv.page_size = page_size;
  b.cpu_kv.k.push_back(kc_host.clone());
  b.cpu_kv.v.push_back(value_of(kc_host));
  b.gpu_kv.k.push_back(to_gpu_bf16(kc_host));
  b.gpu_kv.v.push_back(to_gpu_bf16(value_of(kc_host)));
  const model::ForwardBatch batch = shuffled_page_batch(seqs, pages, page_size, rng);
  for (const auto& [start, n] : seqs) {
    b.tokens += n;
    b.kv_lens.push_back(start + n);
  }
  b.q = to_gpu_bf16(rand_host({b.tokens, heads, kKey}, 1.0f, rng)).to(Device::cpu()).to(DType::f32);
  b.k = to_gpu_bf16(rand_host({b.tokens, 1, kKey}, 1.0f, rng)).to(Device::cpu()).to(DType::f32);
  const layers::ForwardContext cctx = model::make_context(batch, b.cpu_kv, Device::cpu());
  b.gctx = model::make_context(batch, b.gpu_kv, Device::cuda(0));
  ops::AttentionParams params;
  params.scale = b.scale;
  params.value_in_key = true;
  b.ref = ops::attention(b.q, b.k, value_of(b.k), 0, params, cctx);  // [T, heads, 512]
  b.qg = to_gpu_bf16(b.q);
  b.kg = to_gpu_bf16(b.k);
  b.vg = to_gpu_bf16(value_of(b.k));
  return owned;
}

kc::MlaArgs args_of(const Batch& b, void* out) {
  return {b.qg.data_ptr(), b.gpu_kv.k[0].data_ptr(), b.gctx.page_table.data<int32_t>(), out,
          b.tokens, b.heads, b.page_size, b.scale};
}

std::vector<float> run_workspace(kc::FlashInferMlaWorkspace& ws, const Batch& b) {
  const kc::PagedKvArgs kv{b.gpu_kv.k[0].data_ptr(), b.gpu_kv.v[0].data_ptr(), b.gctx.page_table.data<int32_t>(),
                           b.gctx.token_starts.data<int32_t>(), b.gctx.start_pos.data<int32_t>(), b.gctx.num_seqs,
                           b.gctx.max_pages, b.page_size, 1, kKey, kLatent};
  kc::write_kv(kv, b.kg.data_ptr(), b.vg.data_ptr(), b.gctx.positions.data<int32_t>(), b.tokens, stream());
  Tensor out = poisoned({b.tokens, b.heads, kLatent}, DType::bf16);
  const kc::MlaBatch batch{b.gctx.h_token_starts.data(), b.kv_lens.data(), b.gctx.num_seqs, b.gctx.max_pages};
  ws.attend(batch, args_of(b, out.data_ptr()), stream());
  return host_values(out);
}

// A prefill step's mixes: 1-token chunks, chunks shorter than a page, long ones, cached prefixes
// ending mid-page, a long prefix (split key ranges).
const std::vector<std::pair<int, int>> kMixed = {{0, 1}, {5, 33}, {0, 130}, {70, 7}, {17, 1}, {300, 200}, {1000, 65}};
const std::vector<std::pair<int, int>> kDecode = {{0, 1}, {300, 1}, {77, 1}, {4000, 1}, {15, 1}};

}  // namespace

TEST(FlashInferMla, MatchesTheCpuReferenceForPrefillAndDecode) {
  SKIP_WITHOUT_MLA_KERNEL();
  std::mt19937 rng(31);
  kc::FlashInferMlaWorkspace ws(0);
  for (const int64_t heads : {16, 128}) {
    for (const int64_t page_size : {16, 64}) {
      SCOPED_TRACE("heads " + std::to_string(heads) + ", page size " + std::to_string(page_size));
      for (const auto* seqs : {&kMixed, &kDecode}) {
        const auto b = make_batch(*seqs, heads, page_size, rng);
        EXPECT_LT(rel_error(run_workspace(ws, *b), b->ref.to_float_vector()), kBf16Kernel);
      }
    }
  }
}

TEST(FlashInferMla, ABatchSplitOverSeveralSchedulesEqualsOne) {
  SKIP_WITHOUT_MLA_KERNEL();
  std::mt19937 rng(32);
  // Three query tiles (of 64 packed rows) per schedule: 12 tokens of 16 heads, so the mixed batch
  // runs as ~40 schedules, sequences cut mid-chunk.
  kc::FlashInferMlaWorkspace small(0, 3), whole(0);
  const auto b = make_batch(kMixed, 16, 16, rng);
  // (Not bit-equal to one schedule: the split key ranges, and so the bf16 partial outputs merged,
  // differ.)
  const std::vector<float> split = run_workspace(small, *b);
  EXPECT_LT(rel_error(split, b->ref.to_float_vector()), kBf16Kernel);
  EXPECT_LT(rel_error(split, run_workspace(whole, *b)), kBf16Kernel);
  // The same batch again re-uses the whole workspace's schedule (every layer of a step does).
  EXPECT_LT(rel_error(run_workspace(whole, *b), b->ref.to_float_vector()), kBf16Kernel);
}

// Also with an empty V cache, as DeepSeek-V2 allocates it on this path (the value is the key's
// tail): the op then writes only K.
TEST(FlashInferMla, TheAttentionOpTakesItForLatentAttention) {
  SKIP_WITHOUT_MLA_KERNEL();
  std::mt19937 rng(33);
  for (const bool value_cache : {true, false}) {
    for (const auto* seqs : {&kMixed, &kDecode}) {
      SCOPED_TRACE(value_cache ? "with a V cache" : "without a V cache");
      const auto b = make_batch(*seqs, 16, 16, rng);
      if (!value_cache) b->gpu_kv.v[0] = Tensor::empty({b->gpu_kv.k[0].size(0), 1, 0}, DType::bf16, Device::cuda(0));
      ops::AttentionParams params;
      params.scale = b->scale;
      params.value_in_key = true;
      ops::cuda::set_op_profiling(true);
      const Tensor out = ops::attention(b->qg, b->kg, b->vg, 0, params, b->gctx);
      ops::cuda::set_op_profiling(false);
      std::string op;
      for (const ops::cuda::OpTime& t : ops::cuda::take_op_profile())
        if (t.op.rfind("attention (", 0) == 0) op = t.op;
      EXPECT_EQ(op, "attention (latent, FlashInfer MLA)");
      EXPECT_LT(rel_error(host_values(out), b->ref.to_float_vector()), kBf16Kernel);
    }
  }
}

// A decode batch captured once over static buffers; each replay's prep re-plans for the key
// counts of that step (as CudaGraphRunner does), which here grow past the captured ones.
TEST(FlashInferMla, AGraphReplaysNewKeyCountsAfterItsPrep) {
  SKIP_WITHOUT_MLA_KERNEL();
  std::mt19937 rng(34);
  const auto captured = make_batch({{0, 1}, {3, 1}, {10, 1}}, 16, 16, rng);
  // Two later steps over the same buffers (same page table width), longer histories.
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  const auto later = make_batch({{700, 1}, {64, 1}, {1500, 1}}, 16, 16, rng);
  const Batch& b = *later;
  ops::AttentionParams params;
  params.scale = b.scale;
  params.value_in_key = true;
  Tensor out;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  const auto pool = make_graph_memory_pool();
  {
    loom::cuda::StreamGuard on(s);
    GraphPoolGuard in_pool(pool);
    (void)ops::cuda::take_replay_preps();
    // Captured with the first batch's host fields but the later batch's device buffers, after an
    // eager warm-up (as CudaGraphRunner's: workspaces are made outside the capture).
    layers::ForwardContext ctx = b.gctx;
    ctx.h_start_pos = captured->gctx.h_start_pos;
    (void)ops::attention(b.qg, b.kg, b.vg, 0, params, ctx);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    try {
      out = ops::attention(b.qg, b.kg, b.vg, 0, params, ctx);
    } catch (const std::exception& e) {
      cudaStreamEndCapture(s, &graph);  // leave the stream usable for the tests after this one
      FAIL() << e.what();
    }
    ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  }
  const std::vector<ops::cuda::ReplayPrep> preps = ops::cuda::take_replay_preps();
  ASSERT_EQ(preps.size(), 1u);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  {
    loom::cuda::StreamGuard on(s);
    for (const auto& prep : preps) prep(b.gctx);
  }
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_LT(rel_error(host_values(out), b.ref.to_float_vector()), kBf16Kernel);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}
