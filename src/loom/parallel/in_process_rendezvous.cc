#include "loom/parallel/in_process_rendezvous.h"

#include "loom/parallel/layout.h"
#include "loom/parallel/peer_failure.h"

namespace loom::parallel {

void InProcessRendezvous::join(std::unique_lock<std::mutex>& lock, int member, const std::string& name,
                               const std::vector<int>& ranks, std::chrono::milliseconds timeout,
                               const std::string& hint) {
  LOOM_CHECK(!joined_[member], name, ": two members joined as rank ", member);
  joined_[member] = true;
  try {
    barrier(lock, name, timeout);
  } catch (const PeerFailure&) {
    std::vector<int> missing;
    for (int m = 0; m < size(); ++m)
      if (!joined_[m]) missing.push_back(ranks[m]);
    if (missing.empty()) throw;  // a peer aborted the group
    throw PeerFailure(str("group ", name, ": rank(s) ", ranks_str(missing), " did not arrive within ",
                          timeout.count() / 1000.0, " s (--dist-timeout); ", hint));
  }
}

void InProcessRendezvous::barrier(std::unique_lock<std::mutex>& lock, const std::string& name,
                                  std::chrono::milliseconds timeout) {
  if (aborted_) throw PeerFailure(str(name, ": a peer rank failed and closed the group"));
  const uint64_t gen = generation_;
  if (++arrived_ == size()) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  if (!cv_.wait_for(lock, timeout, [&] { return generation_ != gen || aborted_; })) {
    aborted_ = true;  // the group is unusable from here on: tell the others too
    cv_.notify_all();
    throw PeerFailure(
        str(name, ": peers did not reach the collective within ", timeout.count() / 1000.0, " s (--dist-timeout)"));
  }
  if (generation_ == gen) throw PeerFailure(str(name, ": a peer rank failed and closed the group"));
}

std::vector<InProcessPost> InProcessRendezvous::post_and_meet(int member, InProcessPost mine, const std::string& name,
                                                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu);
  posted[member] = std::move(mine);
  barrier(lock, name, timeout);
  return posted;
}

void InProcessRendezvous::meet(const std::string& name, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu);
  barrier(lock, name, timeout);
}

void InProcessRendezvous::abort() {
  std::lock_guard<std::mutex> lock(mu);
  aborted_ = true;
  cv_.notify_all();
}

}  // namespace loom::parallel
