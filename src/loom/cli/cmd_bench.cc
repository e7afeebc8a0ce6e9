// loom bench latency --model-path DIR [--load-format dummy] --batch-size 1,32,128 --input-len 1024
//   --output-len 128 [--prefill-len 2048,8192] [--profile-ops] [--device cuda] [--disable-cuda-graph] ...
// One static batch per batch size: prefill every sequence, then decode output_len - 1 steps
// (greedy, tokens fed back), the way SGLang's bench_one_batch measures. Prints per batch size the
// prefill time, the median decode step, output tok/s and the decode step's fraction of the HBM
// roofline: bytes the step must read (weights it touches + KV it attends over) / bandwidth
// measured by a copy kernel in the same run, and the GPU step: the last step enqueued 10 times back
// to back (events on the stream), so the decode step less it is the host's share of a step (one
// GPU only). --prefill-len adds single-sequence prefill timings;
// --profile-ops prints where the device time of one prefill and one decode step goes, per op.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "loom/cli/model_flags.h"
#include "loom/cli/parallel_flags.h"
#include "loom/tensor/error.h"

#ifdef LOOM_HAVE_CUDA
#include "loom/cache/kv_pool.h"
#include "loom/kernels/cuda/kernels.h"
#include "loom/layers/ops_cuda.h"
#include "loom/runtime/model_runner.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom::cli {

int cmd_bench_serving(Args& args);  // cmd_bench_serving.cc

#ifdef LOOM_HAVE_CUDA
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Device-to-device copy bandwidth (bytes read + written per second), median of 20 copies of 1 GiB.
double measure_bandwidth(const Device& dev) {
  const int64_t bytes = int64_t{1} << 30;
  Tensor a = Tensor::zeros({bytes}, DType::u8, dev), b = Tensor::zeros({bytes}, DType::u8, dev);
  cudaStream_t s = cuda::current_stream(dev.index);
  cuda::Event start, stop;
  std::vector<double> gbps;
  for (int i = 0; i < 23; ++i) {
    start.record(s);
    kernels::cuda::copy_kernel(a.data_ptr(), b.data_ptr(), bytes, s);
    stop.record(s);
    stop.synchronize();
    if (i >= 3) gbps.push_back(2.0 * bytes / (stop.ms_since(start) * 1e-3));
  }
  std::sort(gbps.begin(), gbps.end());
  return gbps[gbps.size() / 2];
}

// Attention weights of one layer (elements): q, k, v, o; for latent attention (DeepSeek) the
// q projection (or its LoRA pair), kv_a (latent + rope), kv_b (absorbed as W_UK and W_UV), o.
double attention_weights(const io::ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size), heads = static_cast<double>(c.num_attention_heads);
  if (!c.mla) return h * c.head_dim * (heads * 2.0 + c.num_key_value_heads * 2.0);
  const auto& m = *c.mla;
  const double qk = static_cast<double>(m.qk_nope_head_dim + m.qk_rope_head_dim);
  const double q = m.q_lora_rank > 0 ? m.q_lora_rank * (h + 1.0 + heads * qk) : h * heads * qk;
  return q + h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank +
         m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim) + heads * m.v_head_dim * h;
}

// Bytes one decode step of `bs` sequences must read from HBM: every dense weight once, the
// experts the batch routes to (expected distinct experts under uniform routing) and any shared
// experts, the KV of every sequence at `context` tokens (for latent attention the cached key
// [k_pe | c] only: the value is read from it), the embedding rows of the batch.
double decode_step_bytes(const io::ModelConfig& c, int64_t bs, double context, const KvLayout& kv) {
  const double b = 2.0;  // bf16
  const double h = static_cast<double>(c.hidden_size);
  const double shared = c.mla ? static_cast<double>(c.mla->n_shared_experts) : 0.0;
  double per_layer = attention_weights(c) + 2 * h;  // + norms
  double total = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    double layer = per_layer;
    if (c.is_moe_layer(l)) {
      const double e = static_cast<double>(c.num_experts), k = static_cast<double>(c.num_experts_per_tok);
      const double touched = e * (1.0 - std::pow(1.0 - k / e, static_cast<double>(bs)));
      layer += e * h + (touched + shared) * 3.0 * h * c.moe_intermediate_size;
    } else {
      layer += 3.0 * h * c.intermediate_size;
    }
    total += layer * b;
  }
  total += (static_cast<double>(c.vocab_size) * h + bs * h + h) * b;  // lm_head, embedding rows, final norm
  const double kv_bytes = c.mla ? static_cast<double>(c.num_hidden_layers) *
                                      (c.mla->kv_lora_rank + c.mla->qk_rope_head_dim) * b
                                : static_cast<double>(kv.bytes_per_token());
  total += static_cast<double>(bs) * context * kv_bytes;
  return total;
}

struct Bench {
  runtime::RunnerOptions opt;
  io::ModelConfig config;
  std::unique_ptr<runtime::Runner> runner;  // one rank, or the parallel runner (rank 0 answers)
  cache::KvPool* pool = nullptr;
  std::mt19937 rng{1234};

  // Pinned host memory for a step's tokens: read back as the engine's sampler reads its ids (an async
  // copy to page-locked memory, then a wait on the stream), not through a pageable copy.
  int32_t* pinned_ids = nullptr;
  int64_t pinned_rows = 0;
  Bench() = default;
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;
  ~Bench() {
    if (pinned_ids) cudaFreeHost(pinned_ids);
  }

  // The greedy token of each logits row into next (device), on stream s.
  static void pick_greedy(const Tensor& logits, Tensor& next, cudaStream_t s) {
    kernels::cuda::select_tokens(logits.data_ptr(), logits.size(0), logits.size(1), 0.0f, 0, 0, next.data<int32_t>(),
                                 s);
  }

  // Runs the batch and returns the greedy token of each logits row (host).
  std::vector<int32_t> step(const model::ForwardBatch& batch, bool allow_graph = true) {
    const Tensor logits = runner->forward_device_logits(batch, allow_graph);
    const int64_t rows = logits.size(0);
    const Device dev = logits.device();
    CUDA_CHECK(cudaSetDevice(dev.index));
    const cudaStream_t s = cuda::current_stream(dev.index);
    Tensor next = Tensor::empty({rows}, DType::i32, dev);
    pick_greedy(logits, next, s);
    if (rows > pinned_rows) {
      if (pinned_ids) CUDA_CHECK(cudaFreeHost(pinned_ids));
      pinned_ids = nullptr;
      CUDA_CHECK(cudaMallocHost(&pinned_ids, rows * sizeof(int32_t)));
      pinned_rows = rows;
    }
    CUDA_CHECK(cudaMemcpyAsync(pinned_ids, next.data_ptr(), rows * sizeof(int32_t), cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));  // the step is complete
    return std::vector<int32_t>(pinned_ids, pinned_ids + rows);
  }

  // The batch's step (forward + greedy selection) enqueued `reps` times back to back, its tokens never
  // read: the GPU's time a step with the host's share hidden (the same tokens and positions each
  // time, so the KV written is the same too). Seconds a step, from events on the device's stream.
  double gpu_step_seconds(const model::ForwardBatch& batch, int reps) {
    const Device dev = opt.device;
    CUDA_CHECK(cudaSetDevice(dev.index));
    const cudaStream_t s = cuda::current_stream(dev.index);
    cudaEvent_t begin = nullptr, end = nullptr;
    CUDA_CHECK(cudaEventCreate(&begin));
    CUDA_CHECK(cudaEventCreate(&end));
    float ms = 0;
    try {
      Tensor next = Tensor::empty({static_cast<int64_t>(batch.seqs.size())}, DType::i32, dev);
      (void)runner->forward_device_logits(batch);  // the first enqueue's host work outside the timing
      CUDA_CHECK(cudaStreamSynchronize(s));
      CUDA_CHECK(cudaEventRecord(begin, s));
      for (int i = 0; i < reps; ++i) pick_greedy(runner->forward_device_logits(batch), next, s);
      CUDA_CHECK(cudaEventRecord(end, s));
      CUDA_CHECK(cudaEventSynchronize(end));
      CUDA_CHECK(cudaEventElapsedTime(&ms, begin, end));
    } catch (...) {
      cudaEventDestroy(begin);
      cudaEventDestroy(end);
      throw;
    }
    cudaEventDestroy(begin);
    cudaEventDestroy(end);
    return ms / 1e3 / reps;
  }

  std::vector<int32_t> random_tokens(int64_t n) {
    std::uniform_int_distribution<int32_t> u(0, static_cast<int32_t>(std::min<int64_t>(config.vocab_size, 150000) - 1));
    std::vector<int32_t> v(n);
    for (auto& x : v) x = u(rng);
    return v;
  }

  // Prefills `bs` sequences of `input_len` tokens in chunks of at most `max_tokens`; returns seconds.
  double prefill(std::vector<model::SequenceInput>& seqs, int64_t max_tokens, std::vector<int32_t>& first,
                 bool allow_graph = true) {
    const auto t0 = Clock::now();
    first.clear();
    for (size_t i = 0; i < seqs.size();) {
      model::ForwardBatch b;
      int64_t tokens = 0;
      while (i < seqs.size() && (b.seqs.empty() || tokens + static_cast<int64_t>(seqs[i].tokens.size()) <= max_tokens)) {
        tokens += static_cast<int64_t>(seqs[i].tokens.size());
        b.seqs.push_back(seqs[i++]);
      }
      for (int32_t t : step(b, allow_graph)) first.push_back(t);
    }
    return seconds_since(t0);
  }
};

void print_profile(const char* what) {
  const auto times = layers::ops::cuda::take_op_profile();
  double total = 0;
  for (const auto& t : times) total += t.ms;
  std::printf("\nop profile, %s (eager, events around each op; %.2f ms in ops):\n", what, total);
  for (const auto& t : times)
    std::printf("  %-32s %9.3f ms %5.1f%% %6lld calls\n", t.op.c_str(), t.ms, total > 0 ? 100 * t.ms / total : 0,
                static_cast<long long>(t.calls));
}

// Where the time of one prefill and one batch-1 decode step goes (--profile-ops).
void profile_ops(Bench& B, int64_t prefill_len, int64_t context) try {
  auto p = B.pool->allocate(B.pool->pages_for_tokens(std::max(prefill_len, context + 1)));
  LOOM_CHECK(p, "bench: KV pool too small to profile");
  std::vector<model::SequenceInput> one(1);
  one[0].tokens = B.random_tokens(prefill_len);
  one[0].page_table = *p;
  std::vector<int32_t> first;
  layers::ops::cuda::set_op_profiling(true);
  B.prefill(one, prefill_len, first, /*allow_graph=*/false);
  layers::ops::cuda::set_op_profiling(false);
  print_profile(str("prefill of ", prefill_len, " tokens").c_str());
  one[0].tokens = B.random_tokens(context);
  B.prefill(one, context, first);
  model::ForwardBatch d;
  d.seqs.push_back({{first[0]}, static_cast<int32_t>(context), *p, false});
  layers::ops::cuda::set_op_profiling(true);
  B.step(d, /*allow_graph=*/false);
  layers::ops::cuda::set_op_profiling(false);
  print_profile(str("one decode step, batch 1, context ", context).c_str());
  B.pool->free(*p);
} catch (const Error& e) {
  layers::ops::cuda::set_op_profiling(false);
  std::printf("op profile failed: %s\n", e.what());
}

struct Row {
  int64_t bs;
  double prefill_s, median_step_s, total_s, step_bytes;
  double gpu_step_s;  // 0: not measured (parallel runs)
};

}  // namespace

int cmd_bench(Args& args) {
  const auto sub = args.take_positional();
  LOOM_CHECK_ARG(sub && (*sub == "latency" || *sub == "serving"),
                 "usage: loom bench latency --model-path DIR ... | loom bench serving --base-url URL ...");
  if (*sub == "serving") return cmd_bench_serving(args);
  Bench B;
  const bool device_given = args.has("device");
  B.opt = parse_runner_flags(args);
  LOOM_CHECK_ARG(!parse_parallel_run_flags(args, B.opt), "--report-comm is for loom logits/generate");
  if (!device_given) B.opt.device = Device::cuda(0);  // a GPU benchmark unless told otherwise
  std::vector<int64_t> batch_sizes = args.has("batch-size") ? args.int_list("batch-size") : std::vector<int64_t>{1};
  const int64_t input_len = args.integer({"input-len"}, 1024, 1, 1 << 20);
  const int64_t output_len = args.integer({"output-len"}, 128, 1, 1 << 20);
  std::vector<int64_t> prefill_lens = args.has("prefill-len") ? args.int_list("prefill-len") : std::vector<int64_t>{};
  const bool profile = args.flag("profile-ops");
  args.finish();
  LOOM_CHECK_ARG(B.opt.device.is_cuda(), "loom bench latency runs on a GPU: pass --device cuda");
  for (int64_t bs : batch_sizes) LOOM_CHECK_ARG(bs >= 1, "--batch-size: ", bs, " must be >= 1");
  const Device dev = B.opt.device;
  CUDA_CHECK(cudaSetDevice(dev.index));

  const int64_t max_bs = *std::max_element(batch_sizes.begin(), batch_sizes.end());
  int64_t need = max_bs * (input_len + output_len);
  for (int64_t p : prefill_lens) need = std::max(need, p);
  const int64_t ps = B.opt.page_size;
  // Only the KV the runs need (plus slack for paging), so activations keep the rest; graphs up to
  // the largest batch.
  if (B.opt.max_total_tokens <= 0) B.opt.max_total_tokens = need + 2 * max_bs * ps;
  B.opt.cuda_graph_max_bs = std::min(B.opt.cuda_graph_max_bs, max_bs);
  const auto t_load = Clock::now();
  B.runner = runtime::create_runner(B.opt);  // loads (each rank its share) and captures the graphs
  const double start_s = seconds_since(t_load);
  B.config = B.runner->config();
  B.pool = &B.runner->kv_pool();
  const int world = B.opt.parallel.world_size();
  const double bandwidth = measure_bandwidth(dev);
  const KvLayout layout = B.pool->layout();
  std::printf("model %s (%s weights), %s, start %.1f s (load + CUDA graphs%s), KV pool %lld tokens, "
              "copy bandwidth %.0f GB/s\n",
              B.opt.model_path.c_str(), B.opt.load_format.c_str(), world > 1 ? B.opt.parallel.str().c_str() : "one GPU",
              start_s, B.opt.disable_cuda_graph ? " off" : "", static_cast<long long>(B.pool->num_pages() * ps),
              bandwidth / 1e9);
  std::fflush(stdout);

  const int64_t prefill_chunk = 16384;
  std::vector<Row> rows;
  for (int64_t bs : batch_sizes) try {
    std::vector<model::SequenceInput> seqs(bs);
    std::vector<std::vector<int32_t>> pages_of(bs);
    for (int64_t i = 0; i < bs; ++i) {
      auto p = B.pool->allocate(B.pool->pages_for_tokens(input_len + output_len));
      LOOM_CHECK(p, "bench: KV pool too small for batch ", bs);
      pages_of[i] = *p;
      seqs[i].tokens = B.random_tokens(input_len);
      seqs[i].page_table = *p;
    }
    // Warm-up at this size (a short prefill and two decode steps), then the measured run.
    {
      std::vector<model::SequenceInput> w(seqs);
      for (auto& s : w) s.tokens.resize(std::min<int64_t>(input_len, 16));
      std::vector<int32_t> first;
      B.prefill(w, prefill_chunk, first);
      model::ForwardBatch d;
      for (int64_t i = 0; i < bs; ++i) d.seqs.push_back({{first[i]}, static_cast<int32_t>(w[i].tokens.size()), pages_of[i], false});
      B.step(d);
    }
    std::vector<int32_t> next;
    const double prefill_s = B.prefill(seqs, prefill_chunk, next);
    std::vector<double> steps;
    model::ForwardBatch last;
    for (int64_t o = 1; o < output_len; ++o) {
      model::ForwardBatch d;
      for (int64_t i = 0; i < bs; ++i)
        d.seqs.push_back({{next[i]}, static_cast<int32_t>(input_len + o - 1), pages_of[i], false});
      const auto t = Clock::now();
      next = B.step(d);
      steps.push_back(seconds_since(t));
      last = std::move(d);
    }
    const double gpu_step_s = world == 1 && !last.seqs.empty() ? B.gpu_step_seconds(last, 10) : 0.0;
    for (auto& p : pages_of) B.pool->free(p);
    double decode_total = 0;
    for (double s : steps) decode_total += s;
    std::vector<double> sorted = steps;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
    rows.push_back({bs, prefill_s, median, prefill_s + decode_total,
                    decode_step_bytes(B.config, bs, input_len + output_len / 2.0, layout), gpu_step_s});
    std::printf("  bs %lld done\n", static_cast<long long>(bs));
    std::fflush(stdout);
  } catch (const Error& e) {  // report and go on with the other sizes
    std::printf("  bs %lld failed: %s\n", static_cast<long long>(bs), e.what());
    std::fflush(stdout);
  }

  std::printf("\nloom bench latency: input %lld, output %lld, %s%s\n", static_cast<long long>(input_len),
              static_cast<long long>(output_len), B.opt.disable_cuda_graph ? "no CUDA graphs" : "CUDA graphs",
              world > 1 ? " (step bytes and roofline are one GPU's figures: not shown for parallel runs)" : "");
  std::printf("%6s %12s %16s %14s %14s %16s %12s %14s\n", "bs", "prefill ms", "decode step ms", "out tok/s",
              "decode tok/s", "step bytes (GB)", "HBM roofline", "GPU step ms");
  for (const Row& r : rows) {
    const double out_tps = r.bs * output_len / r.total_s;
    const double roofline = r.median_step_s > 0 ? (r.step_bytes / bandwidth) / r.median_step_s : 0;
    std::printf("%6lld %12.1f %16.3f %14.0f %14.0f", static_cast<long long>(r.bs), r.prefill_s * 1e3,
                r.median_step_s * 1e3, out_tps, r.median_step_s > 0 ? r.bs / r.median_step_s : 0);
    if (world == 1)  // 69.7 must not read as 70
      std::printf(" %16.2f %11.1f%% %14.3f\n", r.step_bytes / 1e9, roofline * 100, r.gpu_step_s * 1e3);
    else
      std::printf(" %16s %12s %14s\n", "-", "-", "-");
  }
  for (int64_t len : prefill_lens) try {
    auto p = B.pool->allocate(B.pool->pages_for_tokens(len));
    LOOM_CHECK(p, "bench: KV pool too small for a prefill of ", len);
    std::vector<model::SequenceInput> one(1);
    one[0].tokens = B.random_tokens(len);
    one[0].page_table = *p;
    std::vector<int32_t> first;
    B.prefill(one, len, first);  // warm-up at this length
    std::vector<double> times;
    for (int i = 0; i < 3; ++i) times.push_back(B.prefill(one, len, first));
    std::sort(times.begin(), times.end());
    std::printf("prefill 1x%lld: %.1f ms (%.0f tok/s), median of 3\n", static_cast<long long>(len), times[1] * 1e3,
                len / times[1]);
    B.pool->free(*p);
  } catch (const Error& e) {
    std::printf("prefill 1x%lld failed: %s\n", static_cast<long long>(len), e.what());
  }
  if (profile) profile_ops(B, prefill_lens.empty() ? input_len : prefill_lens.back(), input_len);
  return 0;
}

#else

int cmd_bench(Args& args) {
  const auto sub = args.take_positional();
  if (sub && *sub == "serving") return cmd_bench_serving(args);
  throw Error("loom bench latency needs the CUDA backend; this loom was built without it");
}

#endif

}  // namespace loom::cli
