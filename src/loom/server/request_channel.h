// Hands a request's outputs from the engine thread (which must never block) to the HTTP thread
// that answers the client.
#pragma once
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "loom/engine/request.h"

namespace loom::server {

class RequestChannel {
 public:
  // Engine thread: queue an output and wake the reader.
  void push(const engine::RequestOutput& out) {
    {
      std::lock_guard<std::mutex> g(mu_);
      pending_.push_back(out);
      if (out.finished) finished_ = true;
    }
    cv_.notify_all();
  }

  // Outputs that arrived, waiting at most `timeout` for the first one (empty on timeout).
  std::vector<engine::RequestOutput> take(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait_for(g, timeout, [this] { return !pending_.empty(); });
    std::vector<engine::RequestOutput> out;
    out.swap(pending_);
    return out;
  }

  // True once the final output has been pushed.
  bool finished() const {
    std::lock_guard<std::mutex> g(mu_);
    return finished_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<engine::RequestOutput> pending_;
  bool finished_ = false;
};

}  // namespace loom::server
