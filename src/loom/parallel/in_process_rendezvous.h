// The meeting point of a group whose members share one process (the device-copy and host-copy
// backends): members find it by key in a process-wide table, post what they offer to a collective,
// and meet on barriers that fail at once when a member aborted the group, or after the timeout
// when one does not come.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "loom/tensor/error.h"

namespace loom::parallel {

struct InProcessPost {  // what a member offers to one collective
  const void* data = nullptr;
  std::vector<int64_t> rows;      // all_gather / reduce_scatter: the counts; all_to_all: rows it sends to each
  std::vector<int64_t> out_rows;  // all_to_all: rows it expects from each
};

class InProcessRendezvous {
 public:
  explicit InProcessRendezvous(int size) : posted(size), joined_(size, false) {}
  virtual ~InProcessRendezvous() = default;
  int size() const { return static_cast<int>(posted.size()); }

  // Marks `member` present and waits for the others (caller holds `lock` on mu). A member missing
  // after `timeout` is a PeerFailure naming the absent global ranks and `hint`.
  void join(std::unique_lock<std::mutex>& lock, int member, const std::string& name, const std::vector<int>& ranks,
            std::chrono::milliseconds timeout, const std::string& hint);
  // Posts `mine` as `member`'s, meets the others, and returns every member's post (group order).
  std::vector<InProcessPost> post_and_meet(int member, InProcessPost mine, const std::string& name,
                                           std::chrono::milliseconds timeout);
  // Every member calls it; returns once all have. PeerFailure when a member aborted or did not come.
  void meet(const std::string& name, std::chrono::milliseconds timeout);
  void abort();  // every meeting of the group, waiting or later, fails

  std::mutex mu;

 private:
  void barrier(std::unique_lock<std::mutex>& lock, const std::string& name, std::chrono::milliseconds timeout);

  std::vector<InProcessPost> posted;  // guarded by mu
  std::condition_variable cv_;
  std::vector<bool> joined_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

// The state S (an InProcessRendezvous made from the group size) of group `key`, made by the first
// member to ask; later members must agree on the size.
template <class S>
std::shared_ptr<S> join_in_process(const std::string& key, int size) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<S>> table;
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = table.begin(); it != table.end();) it = it->second.expired() ? table.erase(it) : std::next(it);
  auto& slot = table[key];
  auto shared = slot.lock();
  if (!shared) {
    shared = std::make_shared<S>(size);
    slot = shared;
  }
  LOOM_CHECK(shared->size() == size, "in-process group ", key, ": members disagree on its size (", shared->size(),
             " and ", size, ")");
  return shared;
}

}  // namespace loom::parallel
