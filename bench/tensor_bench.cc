// Host dtype conversion of a logits block: what the runner does to every step's logits before the
// host sampler (bf16 [batch, vocab] -> f32). Qwen3's vocabulary, batches of 1, 64 and 256 rows.
//   build/bench/bench_tensor
#include <benchmark/benchmark.h>

#include "loom/tensor/tensor.h"

namespace {

void BM_LogitsBf16ToF32(benchmark::State& state) {
  const int64_t rows = state.range(0), vocab = 151936;
  loom::Tensor bf16 = loom::Tensor::empty({rows, vocab}, loom::DType::bf16);
  auto* p = bf16.data<uint16_t>();
  for (int64_t i = 0; i < bf16.numel(); ++i) p[i] = loom::f32_to_bf16(static_cast<float>(i % 1000) * 0.01f);
  for (auto _ : state) {
    loom::Tensor f32 = bf16.to(loom::DType::f32);
    benchmark::DoNotOptimize(f32.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * bf16.numel() * 6);  // 2 read + 4 written per element
}
BENCHMARK(BM_LogitsBf16ToF32)->Arg(1)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
