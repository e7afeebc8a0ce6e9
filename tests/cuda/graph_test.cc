// Decode through CUDA graphs against eager decode, and the capture rule for communicators.
#include <array>
#include <chrono>
#include <map>
#include <thread>

#include "cuda/cuda_test_util.h"
#include "loom/engine/scheduler.h"
#include "loom/parallel/graph_registry.h"
#include "loom/parallel/nccl_communicator.h"
#include "loom/parallel/rank_launcher.h"
#include "loom/runtime/cuda_graph_runner.h"
#include "loom/runtime/generate.h"
#include "loom/tensor/allocator.h"
#include "model/reference.h"
#include "tokenizer/tokenizer_fixture.h"

using namespace loom;
using loom::testing::model_dir;

namespace {

std::unique_ptr<runtime::Runner> gpu_runner(const std::string& name, bool graphs) {
  runtime::RunnerOptions o;
  o.model_path = model_dir(name);
  o.device = Device::cuda(0);
  o.max_total_tokens = 4096;
  o.mem_fraction_static = 0.5;
  o.disable_cuda_graph = !graphs;
  o.cuda_graph_max_bs = 16;
  return runtime::create_runner(o);
}

}  // namespace

TEST(CudaGraphs, BucketsCoverEveryBatchSize) {
  const auto b = runtime::cuda_graph_buckets(160);
  EXPECT_EQ(b.front(), 1);
  EXPECT_EQ(b.back(), 160);
  EXPECT_EQ(runtime::cuda_graph_buckets(5).back(), 5);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_GT(b[i], b[i - 1]);
}

TEST(CudaGraphs, GraphDecodeGivesTheSameTokensAsEager) {
  SKIP_WITHOUT_GPU();
  // DeepSeek-V2 at 512 + 64 replays FlashInfer's MLA kernel, whose schedule is re-planned before
  // every replay (ops::cuda::take_replay_preps).
  for (const std::string name :
       {"tiny-qwen3", "tiny-qwen3-moe", "variants/qwen3-moe-mqa-e5", "variants/deepseek-v2-latent512"}) {
    SCOPED_TRACE(name);
    auto eager = gpu_runner(name, false);
    auto graphed = gpu_runner(name, true);
    for (const std::vector<int32_t>& prompt : {std::vector<int32_t>{1}, {5, 17, 300, 2, 9, 44, 101}}) {
      EXPECT_EQ(runtime::generate_greedy(*graphed, prompt, 24), runtime::generate_greedy(*eager, prompt, 24));
    }
    // A batch of 4 sequences (a bucket size, so the graph computes exactly what eager does).
    std::array<runtime::Runner*, 2> runners{eager.get(), graphed.get()};
    std::vector<int32_t> tokens[2];
    for (int r = 0; r < 2; ++r) {
      runtime::Runner& run = *runners[r];
      model::ForwardBatch b;
      std::vector<std::vector<int32_t>> owned;
      for (int s = 0; s < 4; ++s) {
        auto p = run.kv_pool().allocate(run.kv_pool().pages_for_tokens(40));
        ASSERT_TRUE(p);
        owned.push_back(*p);
        b.seqs.push_back({{static_cast<int32_t>(3 + s), 7, 11}, 0, *p, false});
      }
      std::vector<int32_t> last = runtime::argmax_rows(run.forward(b));
      for (int step = 0; step < 10; ++step) {
        model::ForwardBatch d;
        for (int s = 0; s < 4; ++s) d.seqs.push_back({{last[s]}, 3 + step, owned[s], false});
        last = runtime::argmax_rows(run.forward(d));
        tokens[r].insert(tokens[r].end(), last.begin(), last.end());
      }
      for (auto& p : owned) run.kv_pool().free(p);
    }
    EXPECT_EQ(tokens[1], tokens[0]) << "batch of 4 with and without graphs";
    // A step uploads only the metadata its bucket reads: after the batch of 4, rows 1..3 of the
    // device's copy are stale, and a batch of 1 must not see them.
    const std::vector<int32_t> prompt{5, 17, 300};
    EXPECT_EQ(runtime::generate_greedy(*graphed, prompt, 12), runtime::generate_greedy(*eager, prompt, 12))
        << "a batch of 1 after a batch of 4";
  }
}

// The engine's overlapped decode (engine/scheduler.h): a step queued before the previous step's
// ids reach the host reads them on the device (placeholders resolved before the graph replays,
// the sampler's two staging slots, the graph runner's two input stagings). Greedy and seeded
// requests arriving in two waves must come out exactly as without overlap, whose steps are the same batches.
TEST(CudaGraphs, OverlappedDecodeGivesTheSameOutputs) {
  SKIP_WITHOUT_GPU();
  for (const std::string name : {"tiny-qwen3-moe", "variants/deepseek-v2-latent512"}) {
    SCOPED_TRACE(name);
    std::map<uint64_t, std::vector<int32_t>> outputs[2];
    std::map<uint64_t, engine::FinishReason> reasons[2];
    uint64_t overlapped[2] = {0, 0};
    for (int overlap = 0; overlap < 2; ++overlap) {
      auto runner = gpu_runner(name, true);
      engine::SchedulerOptions o;
      o.overlap = overlap == 1;
      o.max_running_requests = 8;
      o.chunked_prefill_size = 64;
      engine::Scheduler s(*runner, tokenizer::testing::qwen3(), o);
      auto request = [&](uint64_t i) {
        engine::Request r;
        for (int t = 0; t < 5 + 9 * static_cast<int>(i); ++t) r.prompt.push_back(static_cast<int32_t>(3 + (i * 37 + t * 11) % 200));
        r.params.max_tokens = 12 + 5 * static_cast<int64_t>(i);
        r.params.temperature = i % 2 ? 0.7 : 0.0;
        r.params.seed = 40 + i;
        r.params.ignore_eos = true;
        r.on_output = [&outputs, &reasons, overlap, i](const engine::RequestOutput& out) {
          auto& ids = outputs[overlap][i];
          ids.insert(ids.end(), out.token_ids.begin(), out.token_ids.end());
          if (out.finished) reasons[overlap][i] = out.finish_reason;
        };
        return r;
      };
      for (uint64_t i = 0; i < 3; ++i) s.add(i, request(i));
      for (int k = 0; k < 6; ++k) s.step();
      for (uint64_t i = 3; i < 6; ++i) s.add(i, request(i));
      for (int k = 0; k < 2000 && !s.idle(); ++k) s.step();
      ASSERT_TRUE(s.idle());
      EXPECT_EQ(s.idle_leak_report(), "");
      overlapped[overlap] = s.stats().overlapped_steps;
    }
    EXPECT_EQ(overlapped[0], 0u);
    EXPECT_GT(overlapped[1], 10u);
    for (uint64_t i = 0; i < 6; ++i) {
      EXPECT_EQ(outputs[1][i], outputs[0][i]) << "request " << i;
      EXPECT_EQ(outputs[1][i].size(), static_cast<size_t>(12 + 5 * i)) << "request " << i;
      EXPECT_EQ(reasons[1][i], engine::FinishReason::length) << "request " << i;
    }
  }
}

// The engine steps on a thread of its own, not the one that made the runner and captured its
// graphs: a step's logits must be ordered on the calling thread's stream. With the capturing
// thread's stream held up for 300 ms, a prefill (piecewise graphs) and a decode step (a decode
// graph) run from another thread and read back on that thread's stream alone must still be the
// eager runner's results.
TEST(CudaGraphs, StepsRunOnTheCallingThreadsStream) {
  SKIP_WITHOUT_GPU();
  auto eager = gpu_runner("tiny-qwen3-moe", false);
  auto graphed = gpu_runner("tiny-qwen3-moe", true);
  std::array<runtime::Runner*, 2> runners{eager.get(), graphed.get()};
  std::array<model::ForwardBatch, 2> prefill, decode;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::vector<int32_t>> pages;
    for (int s = 0; s < 2; ++s) {
      auto p = runners[r]->kv_pool().allocate(runners[r]->kv_pool().pages_for_tokens(40));
      ASSERT_TRUE(p);
      pages.push_back(*p);
    }
    std::vector<int32_t> a(10, 7), b(22, 9);  // 32 tokens: a captured size, so graphs equal eager
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<int32_t>(3 + i * 5);
    prefill[r].seqs = {{a, 0, pages[0], false}, {b, 0, pages[1], false}};
    decode[r].seqs = {{{11}, 10, pages[0], false}, {{13}, 22, pages[1], false}};
  }
  const std::vector<float> want_prefill = eager->forward(prefill[0]).to_float_vector();
  const std::vector<float> want_decode = eager->forward(decode[0]).to_float_vector();

  const cudaStream_t capturing = loom::cuda::current_stream(0);
  ASSERT_EQ(cudaLaunchHostFunc(
                capturing, [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }, nullptr),
            cudaSuccess);
  std::vector<float> got_prefill, got_decode;
  std::thread other([&] {
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    const auto read = [](const Tensor& logits) {  // on this thread's stream only (no legacy-stream copy)
      std::vector<uint16_t> raw(logits.numel());
      const cudaStream_t s = loom::cuda::current_stream(0);
      EXPECT_EQ(cudaMemcpyAsync(raw.data(), logits.data_ptr(), raw.size() * 2, cudaMemcpyDeviceToHost, s),
                cudaSuccess);
      EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
      std::vector<float> f;
      for (uint16_t v : raw) f.push_back(bf16_to_f32(v));
      return f;
    };
    got_prefill = read(graphed->forward_device_logits(prefill[1]));
    got_decode = read(graphed->forward_device_logits(decode[1]));
  });
  other.join();
  loom::cuda::synchronize();
  EXPECT_LT(loom::testing::scaled_error(got_prefill, want_prefill), 1e-3);
  EXPECT_LT(loom::testing::scaled_error(got_decode, want_decode), 1e-3);
}

TEST(CudaGraphs, UnregisteredCommunicatorDuringCaptureFailsLoudly) {
  SKIP_WITHOUT_GPU();
  using namespace std::chrono_literals;
  parallel::run_local(1, 60s, [&](int rank, int local, parallel::Store& store) {
    parallel::NcclCommunicator comm("tp", {0}, rank, store, "nccl", local, 60s);
    Tensor t = Tensor::zeros({8}, DType::f32, Device::cuda(local));
    loom::cuda::Stream s;
    cudaGraph_t graph = nullptr;
    {
      loom::cuda::StreamGuard on(s.get());
      parallel::GraphCaptureGuard capturing;
      ASSERT_EQ(cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal), cudaSuccess);
      try {
        comm.all_reduce_sum(t);
        ADD_FAILURE() << "an unregistered communicator was used inside a capture without an error";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("never registered"), std::string::npos) << e.what();
      }
      EXPECT_EQ(cudaStreamEndCapture(s.get(), &graph), cudaSuccess);
      if (graph) cudaGraphDestroy(graph);
    }
    // Registered and prepared through the registry, the same use is allowed.
    parallel::GraphRegistry registry;
    auto shared = std::shared_ptr<parallel::Communicator>(&comm, [](parallel::Communicator*) {});
    registry.add("tp", shared);
    registry.prepare_for_capture();
    parallel::GraphCaptureGuard capturing;
    EXPECT_NO_THROW(comm.all_reduce_sum(t));
  });
}

// Start-up out of memory is an error naming needed and free bytes, not a crash.
TEST(CudaStartup, KvPoolTooLargeNamesNeededAndFreeBytes) {
  SKIP_WITHOUT_GPU();
  runtime::RunnerOptions o;
  o.model_path = model_dir("tiny-qwen3-moe");
  o.device = Device::cuda(0);
  o.max_total_tokens = int64_t{1} << 30;  // a billion tokens of KV
  try {
    runtime::create_runner(o);
    FAIL() << "a KV pool larger than the GPU was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of GPU memory for the KV cache"), std::string::npos) << m;
    EXPECT_NE(m.find("need"), std::string::npos) << m;
    EXPECT_NE(m.find("free"), std::string::npos) << m;
  }
}

TEST(CudaStartup, WeightsThatDoNotFitNameNeededAndFreeBytes) {
  SKIP_WITHOUT_GPU();
  // Take all but 8-9 MiB of the GPU (in halving chunks: free memory need not be one range), then
  // load a checkpoint of ~10 MB of weights.
  release_cached_device_memory(Device::cuda(0));
  const size_t keep = size_t{8} << 20;
  std::vector<void*> hogs;
  for (size_t chunk = size_t{1} << 36; chunk >= (size_t{1} << 20); chunk /= 2) {
    for (;;) {
      size_t free_b = 0, total_b = 0;
      ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
      void* p = nullptr;
      if (free_b < keep + chunk || cudaMalloc(&p, chunk) != cudaSuccess) break;
      hogs.push_back(p);
    }
    (void)cudaGetLastError();
  }
  runtime::RunnerOptions o;
  o.model_path = model_dir("tiny-qwen3-moe-realvocab");
  o.device = Device::cuda(0);
  o.max_total_tokens = 64;
  o.disable_cuda_graph = true;
  try {
    runtime::create_runner(o);
    ADD_FAILURE() << "weights loaded into ~8 MiB";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of GPU memory"), std::string::npos) << m;
    EXPECT_NE(m.find("needed"), std::string::npos) << m;
    EXPECT_NE(m.find("free"), std::string::npos) << m;
    std::printf("start-up OOM message: %s\n", m.c_str());
  }
  for (void* p : hogs) cudaFree(p);
}
