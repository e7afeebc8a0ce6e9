// Hands a request's outputs from the engine thread (which must never block) to the HTTP thread
// that answers the client. A request with n choices is n engine requests feeding one channel;
// each output comes tagged with its choice.
#pragma once
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "loom/engine/request.h"

namespace loom::server {

struct ChoiceOutput {
  int choice = 0;
  engine::RequestOutput out;
};

class RequestChannel {
 public:
  explicit RequestChannel(int choices = 1) : unfinished_(choices) {}

  // Engine thread: queue choice `choice`'s output and wake the reader.
  void push(int choice, const engine::RequestOutput& out) {
    {
      std::lock_guard<std::mutex> g(mu_);
      pending_.push_back({choice, out});
      if (out.finished) --unfinished_;
    }
    cv_.notify_all();
  }

  // Outputs that arrived, waiting at most `timeout` for the first one (empty on timeout).
  std::vector<ChoiceOutput> take(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait_for(g, timeout, [this] { return !pending_.empty(); });
    std::vector<ChoiceOutput> out;
    out.swap(pending_);
    return out;
  }

  // True once every choice's final output has been pushed.
  bool finished() const {
    std::lock_guard<std::mutex> g(mu_);
    return unfinished_ <= 0;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ChoiceOutput> pending_;
  int unfinished_;
};

}  // namespace loom::server
