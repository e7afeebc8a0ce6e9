// Hands a request's outputs from the engine thread (which must never block) to the connection
// that answers the client. A request with n choices is n engine requests feeding one channel;
// each output comes tagged with its choice. The connection is woken by a callback, not by polling:
// its I/O thread sleeps in the event loop until the engine has something for it.
#pragma once
#include <functional>
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
  // `on_ready` runs on the engine thread after each push, outside the channel's lock; it must
  // only schedule work (post to the connection's strand), never block or take long.
  explicit RequestChannel(int choices, std::function<void()> on_ready = nullptr)
      : unfinished_(choices), on_ready_(std::move(on_ready)) {}

  // Engine thread: queue choice `choice`'s output and wake the reader.
  void push(int choice, const engine::RequestOutput& out) {
    {
      std::lock_guard<std::mutex> g(mu_);
      pending_.push_back({choice, out});
      if (out.finished) --unfinished_;
    }
    if (on_ready_) on_ready_();
  }

  // The outputs that arrived since the last call (never waits).
  std::vector<ChoiceOutput> take() {
    std::lock_guard<std::mutex> g(mu_);
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
  std::vector<ChoiceOutput> pending_;
  int unfinished_;
  const std::function<void()> on_ready_;
};

}  // namespace loom::server
