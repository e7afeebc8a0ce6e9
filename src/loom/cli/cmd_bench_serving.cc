// loom bench serving --base-url http://127.0.0.1:30000 [--backend completions|chat]
//   [--dataset random|sharegpt] [--dataset-path FILE] [--random-input-len 1024]
//   [--random-output-len 128] [--random-range-ratio 0] [--random-prompt ids|text]
//   [--random-vocab-size 10000] [--sharegpt-output-len N] [--tokenizer DIR] [--num-prompts 1000]
//   [--max-concurrency N] [--request-rate inf] [--seed 1] [--model NAME] [--api-key KEY]
//   [--disable-stream] [--disable-ignore-eos] [--extra-request-body JSON] [--output-file FILE.json]
// A load generator for any OpenAI-compatible server, the way SGLang's bench_serving measures:
// requests arrive all at once or as a Poisson process of --request-rate per second, at most
// --max-concurrency in flight; prints request / output / total throughput and TTFT, ITL, TPOT and
// end-to-end latency (mean, median, p90, p99), and writes the same as JSON with --output-file.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include "loom/cli/args.h"
#include "loom/cli/serving_client.h"
#include "loom/cli/serving_dataset.h"
#include "loom/cli/serving_stats.h"
#include "loom/cli/tokenizer_flags.h"
#include "loom/tensor/error.h"

namespace loom::cli {
namespace {

using Clock = std::chrono::steady_clock;

// At most `n` holders at once.
class Slots {
 public:
  explicit Slots(int64_t n) : free_(n) {}
  void acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t free_;
};

// "[#####.....] 123/1000" on stderr while the run lasts, when stderr is a terminal.
class ProgressBar {
 public:
  ProgressBar(const std::atomic<int64_t>& done, int64_t total) : done_(done), total_(total) {
    if (!::isatty(2)) return;
    thread_ = std::thread([this] {
      for (;;) {
        draw();
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_; })) break;
      }
      draw();
      std::fprintf(stderr, "\n");
    });
  }
  ~ProgressBar() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void draw() const {
    const int64_t d = done_.load(), width = 40, filled = total_ ? d * width / total_ : width;
    std::fprintf(stderr, "\r[%s%s] %lld/%lld", std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 static_cast<long long>(d), static_cast<long long>(total_));
  }
  const std::atomic<int64_t>& done_;
  int64_t total_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

int cmd_bench_serving(Args& args) {
  ServingTarget target = parse_base_url(args.string("base-url", "http://127.0.0.1:30000"));
  const std::string backend = args.string("backend", "completions");
  LOOM_CHECK_ARG(backend == "completions" || backend == "chat", "--backend: '", backend,
                 "' (allowed: completions, chat)");
  target.chat = backend == "chat";
  target.stream = !args.flag("disable-stream");
  target.ignore_eos = !args.flag("disable-ignore-eos");
  target.api_key = args.string("api-key", "");
  target.model = args.string("model", "");
  target.timeout_s = static_cast<int>(args.integer({"request-timeout"}, target.timeout_s, 1, 24 * 3600));
  const std::string dataset = args.string("dataset", "random");
  LOOM_CHECK_ARG(dataset == "random" || dataset == "sharegpt", "--dataset: '", dataset,
                 "' (allowed: random, sharegpt)");
  const std::string dataset_path = args.string("dataset-path", "");
  RandomDatasetOptions ro;
  ro.num_prompts = args.integer({"num-prompts"}, ro.num_prompts, 1, 10000000);
  ro.input_len = args.integer({"random-input-len"}, ro.input_len, 1, 1 << 24);
  ro.output_len = args.integer({"random-output-len"}, ro.output_len, 1, 1 << 24);
  ro.range_ratio = args.number("random-range-ratio", ro.range_ratio);
  ro.vocab = args.integer({"random-vocab-size"}, ro.vocab, 1, std::numeric_limits<int32_t>::max());
  const std::string random_prompt = args.string("random-prompt", target.chat ? "text" : "ids");
  LOOM_CHECK_ARG(random_prompt == "ids" || random_prompt == "text", "--random-prompt: '", random_prompt,
                 "' (allowed: ids, text)");
  LOOM_CHECK_ARG(!(target.chat && random_prompt == "ids"), "--backend chat sends text: use --random-prompt text");
  ro.text = random_prompt == "text";
  ro.seed = static_cast<uint64_t>(args.integer({"seed"}, 1, 0, std::numeric_limits<int64_t>::max()));
  const std::optional<int64_t> sharegpt_out =
      args.has("sharegpt-output-len") ? std::optional<int64_t>(args.integer({"sharegpt-output-len"}, 0, 1, 1 << 24))
                                      : std::nullopt;
  const int64_t max_concurrency = args.integer({"max-concurrency"}, ro.num_prompts, 1, 1 << 20);
  const double rate = args.number("request-rate", std::numeric_limits<double>::infinity());
  LOOM_CHECK_ARG(rate > 0, "--request-rate: ", rate, " must be > 0 (inf: all at once)");
  const std::string output_file = args.string("output-file", "");
  const std::string tokenizer_dir = args.string("tokenizer", "");
  if (const std::string extra = args.string("extra-request-body", ""); !extra.empty()) {
    target.extra_body = nlohmann::json::parse(extra, nullptr, /*allow_exceptions=*/false);
    LOOM_CHECK_ARG(target.extra_body.is_object(), "--extra-request-body: '", extra,
                   "' is not a JSON object (e.g. '{\"response_format\": {\"type\": \"json_object\"}}')");
  }
  args.finish();

  std::optional<tokenizer::Tokenizer> tok;
  if (!tokenizer_dir.empty()) tok.emplace(load_tokenizer_flag(tokenizer_dir));
  std::vector<BenchPrompt> prompts;
  if (dataset == "random") {
    prompts = random_dataset(ro, tok ? &*tok : nullptr);
  } else {
    LOOM_CHECK_ARG(!dataset_path.empty(), "--dataset sharegpt needs --dataset-path FILE");
    prompts = sharegpt_dataset(dataset_path, ro.num_prompts, ro.seed, tok ? &*tok : nullptr, sharegpt_out);
  }
  if (target.model.empty()) target.model = first_served_model(target);

  const int64_t n = static_cast<int64_t>(prompts.size());
  std::vector<double> arrival(n, 0.0);  // seconds after the start
  if (std::isfinite(rate)) {
    std::mt19937_64 rng(ro.seed ^ 0x9e3779b97f4a7c15ull);
    std::exponential_distribution<double> gap(rate);
    for (int64_t i = 1; i < n; ++i) arrival[i] = arrival[i - 1] + gap(rng);
  }
  std::fprintf(stderr, "loom bench serving: %lld %s requests to %s%s (model %s), rate %s, max concurrency %lld\n",
               static_cast<long long>(n), dataset.c_str(), target.origin.c_str(), target.prefix.c_str(),
               target.model.c_str(), std::isfinite(rate) ? std::to_string(rate).c_str() : "inf",
               static_cast<long long>(max_concurrency));

  std::vector<RequestResult> results(n);
  std::atomic<int64_t> done{0};
  Slots slots(max_concurrency);
  std::vector<std::thread> workers;
  const Clock::time_point start = Clock::now();
  {
    ProgressBar bar(done, n);
    for (int64_t i = 0; i < n; ++i) {
      std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(arrival[i])));
      slots.acquire();
      workers.emplace_back([&, i] {
        results[i] = send_request(target, prompts[i]);
        slots.release();
        ++done;
      });
    }
    for (auto& w : workers) w.join();
  }
  const double duration = std::chrono::duration<double>(Clock::now() - start).count();

  const ServingSummary s = summarize(results, duration);
  std::printf("%s", format_summary(s, "Serving Benchmark Result").c_str());
  if (!output_file.empty()) {
    nlohmann::json j = to_json(s);
    j["backend"] = backend;
    j["base_url"] = target.origin + target.prefix;
    j["model"] = target.model;
    j["dataset"] = dataset;
    j["num_prompts"] = n;
    j["max_concurrency"] = max_concurrency;
    j["request_rate"] = std::isfinite(rate) ? nlohmann::json(rate) : nlohmann::json("inf");
    nlohmann::json per_request = nlohmann::json::array();  // in the order the prompts were sent
    for (const RequestResult& r : results) {
      nlohmann::json q = {{"ok", r.ok}, {"prompt_tokens", r.prompt_tokens}, {"output_tokens", r.output_tokens},
                          {"ttft_ms", r.ttft_s * 1e3}, {"e2e_ms", r.e2e_s * 1e3}};
      if (!r.ok) q["error"] = r.error;
      per_request.push_back(std::move(q));
    }
    j["requests"] = std::move(per_request);
    if (dataset == "random") {
      j["random_input_len"] = ro.input_len;
      j["random_output_len"] = ro.output_len;
      j["random_range_ratio"] = ro.range_ratio;
    }
    std::ofstream out(output_file);
    LOOM_CHECK_ARG(out.good(), "--output-file: cannot write '", output_file, "'");
    out << j.dump(2) << "\n";
  }
  LOOM_CHECK(s.completed > 0, "every request failed; the first: ", s.first_error);
  return 0;
}

}  // namespace loom::cli
