// The decode kernels as a decode step runs them: each benchmark captures 48 launches (one per
// layer, each on its own weights, so every launch reads cold HBM: 48 x the weights is far past the
// 50 MB L2) into one CUDA graph and replays it; reported per launch, with the weight bytes' rate.
// Kernel times measured this way match those inside a real decode step (bench/NOTES.md), unlike
// Nsight Compute's, which time each kernel alone.
//   ./build/bench/bench_decode_kernels            (on a GPU; without one every benchmark is skipped)
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "loom/kernels/cuda/kernels.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/tensor.h"

namespace kc = loom::kernels::cuda;
namespace {

constexpr int kLayers = 48;
// Each iteration replays kLayers launches but reports the time of one (manual time), so Google
// Benchmark's default 0.5 s of it would take 24 s of replays a case: ask for 0.5 s of replays.
constexpr double kMinTime = 0.5 / kLayers;

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

using loom::DType;
using loom::Device;
using loom::Tensor;

// n bf16 values on the GPU from the dummy-weight generator (uniform in [-0.05, 0.05]).
Tensor random_bf16(int64_t n, uint64_t key, cudaStream_t s) {
  Tensor t = Tensor::empty({n}, DType::bf16, Device::cuda(0));
  kc::dummy_fill(t.data_ptr(), kc::FillType::bf16, n, n, n, 0, key, false, 0.05f, s);
  return t;
}

// A host vector copied to a new GPU tensor.
template <typename T>
Tensor to_gpu(const std::vector<T>& v, DType dtype) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, dtype, Device::cuda(0));
  CUDA_CHECK(cudaMemcpy(t.data_ptr(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return t;
}

// Replays a graph of kLayers launches (launch(l) for layer l) and reports µs per launch and the
// rate of `bytes` per launch.
void time_graph(benchmark::State& state, cudaStream_t s, const std::function<void(int)>& launch, double bytes) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int l = 0; l < kLayers; ++l) launch(l);
  CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_CHECK(cudaGraphLaunch(exec, s));  // warm-up
  cudaEvent_t begin, end;
  CUDA_CHECK(cudaEventCreate(&begin));
  CUDA_CHECK(cudaEventCreate(&end));
  for (auto _ : state) {
    CUDA_CHECK(cudaEventRecord(begin, s));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaEventRecord(end, s));
    CUDA_CHECK(cudaEventSynchronize(end));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, begin, end));
    state.SetIterationTime(ms / 1e3 / kLayers);
  }
  state.counters["TB/s"] = benchmark::Counter(bytes / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// y = x · wᵀ for m rows: args n, k, m (Qwen3-30B-A3B's qkv, o, router and lm_head at decode).
void BM_Gemv(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no GPU");
  const int64_t n = state.range(0), k = state.range(1), m = state.range(2);
  const int copies = n * k > (int64_t{1} << 27) ? 4 : kLayers;  // lm_head: 4 copies are past L2 already
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreate(&s));
  {
    const Tensor w = random_bf16(n * k * copies, 1, s), x = random_bf16(m * k, 2, s);
    const Tensor y = Tensor::empty({m, n}, DType::bf16, Device::cuda(0));
    time_graph(state, s, [&](int l) { kc::gemv(x.data_ptr(), w.data<uint16_t>() + l % copies * n * k, y.data_ptr(), m, n, k, s); },
               2.0 * n * k);
  }
  CUDA_CHECK(cudaStreamDestroy(s));
}
BENCHMARK(BM_Gemv)
    ->ArgNames({"n", "k", "m"})
    ->Args({5120, 2048, 1})
    ->Args({2048, 4096, 1})
    ->Args({128, 2048, 1})
    ->Args({151936, 2048, 1})
    ->Args({5120, 2048, 8})
    ->Args({2048, 4096, 8})
    ->UseManualTime()
    ->MinTime(kMinTime)
    ->Unit(benchmark::kMicrosecond);

// A decode step's router (GEMV over a 128 x 2048 weight, then top-8): `fused` as the one kernel
// whose last block picks the top-k, else as two launches (the GEMV, then route_topk's warp per
// token); against BM_Gemv's 128 x 2048 row they show what the top-k tail costs.
void bench_router(benchmark::State& state, bool fused) {
  if (!have_gpu()) return state.SkipWithError("no GPU");
  const int64_t m = state.range(0), experts = 128, top_k = 8, hidden = 2048;
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreate(&s));
  {
    const Tensor w = random_bf16(experts * hidden * kLayers, 6, s), x = random_bf16(m * hidden, 7, s);
    const Tensor logits = Tensor::empty({m, experts}, DType::bf16, Device::cuda(0));
    const Tensor weights = Tensor::empty({m, top_k}, DType::f32, Device::cuda(0));
    const Tensor ids = Tensor::empty({m, top_k}, DType::i32, Device::cuda(0));
    auto route = [&](const uint16_t* wl) {
      if (fused) {
        kc::router_topk(x.data_ptr(), wl, logits.data_ptr(), m, hidden, experts, top_k, true, weights.data<float>(),
                        ids.data<int32_t>(), s);
      } else {
        kc::gemv(x.data_ptr(), wl, logits.data_ptr(), m, experts, hidden, s);
        kc::route_topk(logits.data_ptr(), m, experts, top_k, true, weights.data<float>(), ids.data<int32_t>(), s);
      }
    };
    route(w.data<uint16_t>());  // once before capture: the fused kernel's first call allocates its counters
    CUDA_CHECK(cudaStreamSynchronize(s));
    time_graph(state, s, [&](int l) { route(w.data<uint16_t>() + l * experts * hidden); }, 2.0 * experts * hidden);
  }
  CUDA_CHECK(cudaStreamDestroy(s));
}
void BM_RouterTopk(benchmark::State& state) { bench_router(state, true); }
void BM_RouterTwoLaunches(benchmark::State& state) { bench_router(state, false); }
BENCHMARK(BM_RouterTopk)->ArgName("m")->Arg(1)->Arg(8)->UseManualTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RouterTwoLaunches)->ArgName("m")->Arg(1)->Arg(8)->UseManualTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);

// Decode attention of `batch` sequences at context 1024 on Qwen3-30B-A3B's heads (32 query, 4 KV,
// head dim 128; pages of 16), the kernel storing the step's K/V itself, then the split merge;
// `splits` 0 takes attention_splits(). Layers rotate over enough caches to read cold HBM.
void BM_DecodeAttention(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no GPU");
  const int64_t batch = state.range(0), ctx = 1024, hq = 32, hk = 4, d = 128, page = 16;
  const int splits = state.range(1) > 0 ? static_cast<int>(state.range(1)) : kc::attention_splits(batch, hk, true);
  const int64_t pages = batch * ctx / page, layer_elems = pages * page * hk * d;
  const int copies = static_cast<int>(std::clamp<int64_t>((int64_t{256} << 20) / (2 * layer_elems * 2), 2, kLayers));
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreate(&s));
  {
    const Tensor k_cache = random_bf16(layer_elems * copies, 8, s), v_cache = random_bf16(layer_elems * copies, 9, s);
    const Tensor q = random_bf16(batch * hq * d, 10, s);
    const Tensor new_k = random_bf16(batch * hk * d, 11, s), new_v = random_bf16(batch * hk * d, 12, s);
    std::vector<int32_t> table(pages), starts(batch + 1), positions(batch, static_cast<int32_t>(ctx - 1));
    for (int64_t i = 0; i < pages; ++i) table[i] = static_cast<int32_t>(i);
    for (int64_t b = 0; b <= batch; ++b) starts[b] = static_cast<int32_t>(b);
    const Tensor d_table = to_gpu(table, DType::i32), d_starts = to_gpu(starts, DType::i32);
    const Tensor d_positions = to_gpu(positions, DType::i32);
    const Tensor out = Tensor::empty({batch, hq, d}, DType::bf16, Device::cuda(0));
    const Tensor work = Tensor::empty({splits, batch, hq, d + 1}, DType::f32, Device::cuda(0));
    time_graph(state, s, [&](int l) {
        const int64_t offset = l % copies * layer_elems;
        const kc::PagedKvArgs kv{k_cache.data<uint16_t>() + offset, v_cache.data<uint16_t>() + offset,
                                 d_table.data<int32_t>(), d_starts.data<int32_t>(), d_positions.data<int32_t>(),
                                 batch, ctx / page, page, hk, d};
        kc::attention(kv, q.data_ptr(), out.data_ptr(), batch, hq, 0.088f, 1, splits, work.data<float>(), s, 0,
                      nullptr, new_k.data_ptr(), new_v.data_ptr());
      }, 2.0 * 2 * batch * ctx * hk * d);
  }
  CUDA_CHECK(cudaStreamDestroy(s));
}
BENCHMARK(BM_DecodeAttention)
    ->ArgNames({"batch", "splits"})
    ->Args({1, 0})
    ->Args({1, 4})
    ->Args({1, 8})
    ->Args({1, 16})
    ->Args({8, 0})
    ->Args({128, 0})
    ->Args({128, 1})
    ->Args({128, 6})
    ->UseManualTime()
    ->MinTime(kMinTime)
    ->Unit(benchmark::kMicrosecond);

// The few-token expert path (gate/up + SiLU, then down + weighted combine) for m tokens of a
// 128-expert top-8 layer, hidden 2048, intermediate 768 (Qwen3-30B-A3B); 16 layers' experts
// rotated, each token's 8 distinct experts changing with the layer.
void BM_MoeDecode(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no GPU");
  const int64_t m = state.range(0), experts = 128, top_k = 8, hidden = 2048, inter = 768, stacks = 16;
  const int64_t gate_up = experts * 2 * inter * hidden, down = experts * hidden * inter;
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreate(&s));
  {
    const Tensor wgu = random_bf16(gate_up * stacks, 3, s), wd = random_bf16(down * stacks, 4, s);
    const Tensor x = random_bf16(m * hidden, 5, s);
    const Tensor act = Tensor::empty({m * top_k, inter}, DType::bf16, Device::cuda(0));
    const Tensor out = Tensor::empty({m, hidden}, DType::bf16, Device::cuda(0));
    std::vector<int32_t> ids(kLayers * m * top_k);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + (i / top_k) * 11) % experts);
    const Tensor d_ids = to_gpu(ids, DType::i32);
    const Tensor d_weights = to_gpu(std::vector<float>(m * top_k, 1.0f / top_k), DType::f32);
    time_graph(state, s, [&](int l) {
        kc::moe_decode(x.data_ptr(), d_ids.data<int32_t>() + l * m * top_k, d_weights.data<float>(), m, top_k, 0,
                       experts, wgu.data<uint16_t>() + l % stacks * gate_up, wd.data<uint16_t>() + l % stacks * down,
                       hidden, inter, act.data_ptr(), out.data_ptr(), s);
      }, 2.0 * 3 * hidden * inter * top_k);  // at m = 1; more tokens share some experts
  }
  CUDA_CHECK(cudaStreamDestroy(s));
}
BENCHMARK(BM_MoeDecode)->ArgName("m")->Arg(1)->Arg(4)->UseManualTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);

// A decode step's router and experts together (Qwen3-30B-A3B: 128 experts, top-8, hidden 2048,
// intermediate 768) for m tokens: router_topk (its last block picks the top-k), then moe_decode.
// Each layer has its own router and expert weights (16 stacks rotated).
void BM_RouterThenExperts(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no GPU");
  const int64_t m = state.range(0), experts = 128, top_k = 8, hidden = 2048, inter = 768, stacks = 16;
  const int64_t gate_up = experts * 2 * inter * hidden, down = experts * hidden * inter, router = experts * hidden;
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreate(&s));
  {
    const Tensor wgu = random_bf16(gate_up * stacks, 3, s), wd = random_bf16(down * stacks, 4, s);
    const Tensor wr = random_bf16(router * kLayers, 6, s), x = random_bf16(m * hidden, 5, s);
    const Tensor logits = Tensor::empty({m, experts}, DType::bf16, Device::cuda(0));
    const Tensor weights = Tensor::empty({m, top_k}, DType::f32, Device::cuda(0));
    const Tensor ids = Tensor::empty({m, top_k}, DType::i32, Device::cuda(0));
    const Tensor act = Tensor::empty({m * top_k, inter}, DType::bf16, Device::cuda(0));
    const Tensor out = Tensor::empty({m, hidden}, DType::bf16, Device::cuda(0));
    auto layer = [&](int l) {
      const uint16_t* r = wr.data<uint16_t>() + l * router;
      const uint16_t* gu = wgu.data<uint16_t>() + l % stacks * gate_up;
      const uint16_t* dn = wd.data<uint16_t>() + l % stacks * down;
      kc::router_topk(x.data_ptr(), r, logits.data_ptr(), m, hidden, experts, top_k, true, weights.data<float>(),
                      ids.data<int32_t>(), s);
      kc::moe_decode(x.data_ptr(), ids.data<int32_t>(), weights.data<float>(), m, top_k, 0, experts, gu, dn, hidden,
                     inter, act.data_ptr(), out.data_ptr(), s);
    };
    layer(0);  // once before capture: router_topk's first call allocates its counters
    CUDA_CHECK(cudaStreamSynchronize(s));
    time_graph(state, s, layer, 2.0 * (router + 3 * hidden * inter * top_k));  // at m = 1
  }
  CUDA_CHECK(cudaStreamDestroy(s));
}
BENCHMARK(BM_RouterThenExperts)->ArgName("m")->Arg(1)->Arg(8)->UseManualTime()->MinTime(kMinTime)->Unit(benchmark::kMicrosecond);

// The GPU sampler over a decode step's logits (Qwen3's vocabulary of 151,936; values uniform in
// [-10, 10], so a top-p of 0.9 keeps a few thousand tokens): args rows and mode, 0 greedy, 1 a
// plain temperature draw, 2 top-p 0.9, 3 top-k 50 and top-p 0.9. Per launch (a step launches it
// once); the rate is of the bf16 logits read once.
void BM_SampleRows(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no GPU");
  const int64_t rows = state.range(0), mode = state.range(1), vocab = 151936;
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreate(&s));
  {
    const Tensor logits = Tensor::empty({rows * vocab}, DType::bf16, Device::cuda(0));
    kc::dummy_fill(logits.data_ptr(), kc::FillType::bf16, rows * vocab, rows * vocab, rows * vocab, 0, 9, false, 10.0f,
                   s);
    std::vector<kc::SampleRow> params(rows);
    for (int64_t r = 0; r < rows; ++r) {
      kc::SampleRow& p = params[r];
      p.u = 0.37 + 0.5 * static_cast<double>(r) / static_cast<double>(rows);
      p.greedy = mode == 0;
      p.top_p = mode >= 2 ? 0.9 : 1.0;
      p.top_k = mode == 3 ? 50 : 0;
    }
    Tensor dev_params = Tensor::empty({static_cast<int64_t>(rows * sizeof(kc::SampleRow))}, DType::u8, Device::cuda(0));
    CUDA_CHECK(cudaMemcpy(dev_params.data_ptr(), params.data(), rows * sizeof(kc::SampleRow), cudaMemcpyHostToDevice));
    const Tensor scratch_l = Tensor::empty({rows, vocab}, DType::f32, Device::cuda(0));
    const Tensor scratch_p = Tensor::empty({rows, vocab}, DType::f32, Device::cuda(0));
    const Tensor ids = Tensor::empty({rows}, DType::i32, Device::cuda(0));
    const Tensor logprobs = Tensor::empty({rows}, DType::f32, Device::cuda(0));
    time_graph(
        state, s,
        [&](int) {
          kc::sample_rows(logits.data_ptr(), rows, vocab, vocab, static_cast<const kc::SampleRow*>(dev_params.data_ptr()),
                          nullptr, nullptr, scratch_l.data<float>(), scratch_p.data<float>(), ids.data<int32_t>(),
                          logprobs.data<float>(), s);
        },
        2.0 * rows * vocab);
  }
  CUDA_CHECK(cudaStreamDestroy(s));
}
BENCHMARK(BM_SampleRows)
    ->ArgNames({"rows", "mode"})
    ->ArgsProduct({{1, 32, 128}, {0, 1, 2, 3}})
    ->UseManualTime()
    ->MinTime(kMinTime)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
