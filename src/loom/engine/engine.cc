#include "loom/engine/engine.h"

#include <cstdio>

#include "loom/engine/heap.h"
#include "loom/engine/validate.h"

namespace loom::engine {

Engine::Engine(std::unique_ptr<runtime::Runner> runner, tokenizer::Tokenizer tokenizer, EngineOptions options)
    : runner_(std::move(runner)), tokenizer_(std::move(tokenizer)), config_(runner_->config()), options_(options) {
  LOOM_CHECK_ARG(options_.max_queue >= 1, "--max-queue must be at least 1");
  scheduler_ = std::make_unique<Scheduler>(*runner_, tokenizer_, options_.scheduler);
  limits_ = scheduler_->limits();
  grammar_ = std::make_unique<grammar::Compiler>(tokenizer_, limits_.vocab_size, limits_.eos_token_ids);
  stats_ = scheduler_->stats();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
    abort_everything_ = true;
    accepting_ = false;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t Engine::submit(Request request) {
  validate_request(request, limits_);
  std::lock_guard<std::mutex> g(mu_);
  if (!accepting_) throw ShuttingDown("the server is shutting down");
  if (const std::string f = runner_->failure(); !f.empty())
    throw RunnerStopped(str("the model runner has stopped (", f, "); restart the server"));
  if (queued_ + static_cast<int64_t>(inbox_.size()) >= options_.max_queue)
    throw QueueFull(str("the waiting queue is full (", options_.max_queue, " requests); retry later"));
  const uint64_t id = next_id_++;
  inbox_.emplace_back(id, std::move(request));
  idle_ = false;
  wake_.notify_one();
  return id;
}

void Engine::abort(uint64_t id) {
  std::lock_guard<std::mutex> g(mu_);
  aborts_.push_back(id);
  wake_.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> g(mu_);
  return stats_;
}

bool Engine::wait_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> g(mu_);
  return idle_cv_.wait_for(g, timeout, [this] { return idle_; });
}

bool Engine::accepting() const {
  std::lock_guard<std::mutex> g(mu_);
  return accepting_;
}

std::string Engine::idle_leak_report() const {
  std::lock_guard<std::mutex> g(mu_);
  return leak_report_;
}

void Engine::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> g(mu_);
    accepting_ = false;
  }
  if (!wait_idle(grace)) {
    std::lock_guard<std::mutex> g(mu_);
    abort_everything_ = true;
    wake_.notify_one();
  }
  wait_idle(std::chrono::seconds(30));
}

void Engine::loop() {
  bool worked = false;  // since the heap was last released
  while (true) {
    std::vector<std::pair<uint64_t, Request>> inbox;
    std::vector<uint64_t> aborts;
    bool abort_all = false;
    {
      std::unique_lock<std::mutex> g(mu_);
      const auto has_work = [this] {
        return stop_ || !inbox_.empty() || !aborts_.empty() || abort_everything_ || !scheduler_->idle();
      };
      const auto linger = options_.release_heap_after_idle;
      if (worked && linger.count() > 0 && !wake_.wait_for(g, linger, has_work)) {
        worked = false;  // idle for `linger`: what the steps freed goes back to the system
        g.unlock();
        release_free_heap();
        std::lock_guard<std::mutex> relock(mu_);
        ++stats_.heap_releases;
        continue;
      }
      wake_.wait(g, has_work);
      inbox.swap(inbox_);
      aborts.swap(aborts_);
      abort_all = abort_everything_;
      abort_everything_ = false;
      if (stop_ && inbox.empty() && scheduler_->idle()) return;
    }
    // Callbacks run here, outside the lock, so they may call submit/abort.
    for (auto& [id, req] : inbox) scheduler_->add(id, std::move(req));
    for (uint64_t id : aborts) scheduler_->abort(id);
    if (abort_all) scheduler_->abort_all();
    if (!scheduler_->idle()) scheduler_->step();
    worked = true;

    std::lock_guard<std::mutex> g(mu_);
    const uint64_t heap_releases = stats_.heap_releases;  // the engine's count, not the scheduler's
    stats_ = scheduler_->stats();
    stats_.heap_releases = heap_releases;
    queued_ = static_cast<int64_t>(scheduler_->num_waiting());
    if (scheduler_->idle() && inbox_.empty()) {
      leak_report_ = scheduler_->idle_leak_report();
      if (!leak_report_.empty()) std::fprintf(stderr, "loom engine: %s\n", leak_report_.c_str());
      idle_ = true;
      idle_cv_.notify_all();
    }
  }
}

}  // namespace loom::engine
