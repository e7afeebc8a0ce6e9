#include "loom/runtime/rank_threads.h"

#include "loom/parallel/rank_launcher.h"

namespace loom::runtime {

RankThreads::RankThreads(int ranks) : errors_(ranks) {
  for (int r = 0; r < ranks; ++r) threads_.emplace_back([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_) t.join();
}

void RankThreads::loop(int rank) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    std::exception_ptr error;
    try {
      (*job)(rank);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu_);
    errors_[rank] = error;
    if (--pending_ == 0) done_.notify_all();
  }
}

void RankThreads::run(const std::function<void(int)>& job) {
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &job;
  pending_ = static_cast<int>(threads_.size());
  std::fill(errors_.begin(), errors_.end(), nullptr);
  ++generation_;
  start_.notify_all();
  done_.wait(lock, [&] { return pending_ == 0; });
  parallel::RankFailures failures;  // added in rank order: the lowest rank that caused it wins
  for (size_t r = 0; r < errors_.size(); ++r)
    if (errors_[r]) failures.add(static_cast<int>(r), errors_[r]);
  if (!failures.any()) return;
  const auto [rank, error] = failures.cause();
  parallel::rethrow_for_rank(rank, error);
}

}  // namespace loom::runtime
