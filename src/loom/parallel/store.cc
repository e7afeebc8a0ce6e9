#include "loom/parallel/store.h"

#include "loom/parallel/peer_failure.h"

namespace loom::parallel {

std::string missing_keys_message(const std::vector<std::string>& missing,
                                 std::chrono::milliseconds timeout) {
  std::string keys;
  for (size_t k = 0; k < missing.size() && k < 8; ++k) keys += (k ? ", '" : "'") + missing[k] + "'";
  if (missing.size() > 8) keys += loom::str(" and ", missing.size() - 8, " more");
  return loom::str("store: timed out after ", timeout.count() / 1000.0, " s (--dist-timeout) waiting for ",
                   keys);
}

void HashStore::set(const std::string& key, const Bytes& value) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    data_[key] = value;
  }
  cv_.notify_all();
}

Bytes HashStore::get(const std::string& key) {
  wait({key}, timeout_);
  std::lock_guard<std::mutex> lock(mu_);
  return data_.at(key);
}

void HashStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto missing = [&] {
    std::vector<std::string> m;
    for (const auto& k : keys)
      if (!data_.count(k)) m.push_back(k);
    return m;
  };
  bool ok = cv_.wait_for(lock, timeout, [&] { return !abort_reason_.empty() || missing().empty(); });
  if (!abort_reason_.empty()) throw PeerFailure(loom::str("store: run aborted: ", abort_reason_));
  if (!ok) throw PeerFailure(missing_keys_message(missing(), timeout));
}

bool HashStore::check(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return data_.count(key) > 0;
}

void HashStore::abort(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (abort_reason_.empty()) abort_reason_ = reason.empty() ? "aborted" : reason;
  }
  cv_.notify_all();
}

}  // namespace loom::parallel
