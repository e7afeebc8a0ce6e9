// The serving engine: one thread owns the Runner and the Scheduler and steps the batch while
// there is work; any thread may submit and abort requests. Outputs arrive through each
// request's callback, on the engine thread.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loom/engine/metrics.h"
#include "loom/grammar/constraint.h"
#include "loom/engine/request.h"
#include "loom/engine/scheduler.h"
#include "loom/runtime/model_runner.h"
#include "loom/tokenizer/tokenizer.h"

namespace loom::engine {

struct EngineOptions {
  SchedulerOptions scheduler;
  int64_t max_queue = 1024;  // waiting requests beyond this are refused (QueueFull)
  // Once idle this long after work, the engine gives the heap's free pages back (engine/heap.h);
  // 0 never does.
  std::chrono::milliseconds release_heap_after_idle{1000};
};

class Engine {
 public:
  Engine(std::unique_ptr<runtime::Runner> runner, tokenizer::Tokenizer tokenizer, EngineOptions options);
  ~Engine();  // aborts whatever is left and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues; returns the request id. Throws RequestError (bad input), QueueFull,
  // ShuttingDown, RunnerStopped.
  uint64_t submit(Request request);
  // Ends the request (finish_reason abort) and frees its KV on the next turn of the engine loop.
  void abort(uint64_t id);

  const io::ModelConfig& config() const { return config_; }
  const tokenizer::Tokenizer& tokenizer() const { return tokenizer_; }
  const ModelLimits& limits() const { return limits_; }
  // Compiles request constraints against this model's vocabulary (any thread).
  grammar::Compiler& grammar() { return *grammar_; }

  EngineStats stats() const;  // as of the end of the last engine step
  // Waits (at most `timeout`) until nothing is queued or running; true when idle.
  bool wait_idle(std::chrono::milliseconds timeout) const;
  // The KV leak check, taken the last time the engine went idle ("" = no leak).
  std::string idle_leak_report() const;

  bool accepting() const;  // false once shutdown() began
  // Why the runner stopped for good ("" while it runs); every request then fails, so /health says so.
  std::string runner_failure() const { return runner_->failure(); }
  // Stops taking requests; lets in-flight ones finish for at most `grace`, then aborts the rest.
  void shutdown(std::chrono::milliseconds grace);

 private:
  void loop();

  std::unique_ptr<runtime::Runner> runner_;
  tokenizer::Tokenizer tokenizer_;
  io::ModelConfig config_;
  EngineOptions options_;
  std::unique_ptr<Scheduler> scheduler_;
  ModelLimits limits_;
  std::unique_ptr<grammar::Compiler> grammar_;

  mutable std::mutex mu_;
  mutable std::condition_variable wake_;      // work for the engine thread
  mutable std::condition_variable idle_cv_;   // the engine went idle
  std::vector<std::pair<uint64_t, Request>> inbox_;
  std::vector<uint64_t> aborts_;
  bool abort_everything_ = false;
  bool accepting_ = true;
  bool stop_ = false;
  bool idle_ = true;
  int64_t queued_ = 0;  // waiting in the scheduler, as of the last step
  uint64_t next_id_ = 1;
  EngineStats stats_;
  std::string leak_report_;
  std::thread thread_;
};

}  // namespace loom::engine
