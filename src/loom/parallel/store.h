// A key-value store through which ranks rendezvous (Gloo addresses, NCCL unique ids, arrivals).
// Waits never hang: they end with a loom::Error after the store's timeout, naming the keys.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace loom::parallel {

using Bytes = std::vector<char>;

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const Bytes& value) = 0;
  // Waits (up to timeout()) for the key, then returns its value.
  virtual Bytes get(const std::string& key) = 0;
  // Waits until every key is present; throws loom::Error naming the missing keys after `timeout`.
  virtual void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) = 0;
  void wait(const std::vector<std::string>& keys) { wait(keys, timeout()); }
  // True when the key is present now (no waiting).
  virtual bool check(const std::string& key) = 0;
  // Marks the run as failed: every current and later wait ends at once with `reason`.
  virtual void abort(const std::string& reason) = 0;

  // The address peers on other nodes reach this process at (Gloo listens there).
  virtual std::string local_address() const { return "127.0.0.1"; }

  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

  void set_string(const std::string& key, const std::string& v) { set(key, Bytes(v.begin(), v.end())); }
  std::string get_string(const std::string& key) {
    Bytes b = get(key);
    return std::string(b.begin(), b.end());
  }

 protected:
  std::chrono::milliseconds timeout_{std::chrono::seconds(600)};
};

// In-process store for ranks that are threads of one process (tests, single-node runs).
class HashStore : public Store {
 public:
  explicit HashStore(std::chrono::milliseconds timeout = std::chrono::seconds(600)) {
    timeout_ = timeout;
  }
  void set(const std::string& key, const Bytes& value) override;
  Bytes get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  using Store::wait;
  bool check(const std::string& key) override;
  void abort(const std::string& reason) override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Bytes> data_;
  std::string abort_reason_;
};

// The error a timed-out wait throws (shared by every store): names the missing keys.
std::string missing_keys_message(const std::vector<std::string>& missing, std::chrono::milliseconds timeout);

}  // namespace loom::parallel
