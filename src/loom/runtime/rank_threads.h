// One long-lived thread per rank of a parallel run: run(job) executes job(rank) on every thread at
// once (collectives need all ranks inside them together) and returns when all are done.
#pragma once
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loom::runtime {

class RankThreads {
 public:
  explicit RankThreads(int ranks);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  // Throws "rank R: <error>" for the lowest failing rank whose error is not a PeerFailure (else the
  // lowest failing rank); InvalidArgument stays InvalidArgument.
  void run(const std::function<void(int rank)>& job);

 private:
  void loop(int rank);

  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace loom::runtime
