// The store across processes and nodes: a server on node 0 at --dist-init-addr, and clients
// (node 0 included) that speak a small length-prefixed protocol over TCP.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loom/parallel/store.h"

namespace loom::parallel {

// Holds the keys in memory and answers clients, one thread per connection.
class TcpStoreServer {
 public:
  // port 0 picks a free port (see port()). Throws loom::Error when the address cannot be bound.
  TcpStoreServer(const std::string& host, int port);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;
  int port() const { return port_; }

 private:
  void accept_loop();
  void serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  HashStore data_;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conn_fds_;
  std::vector<std::thread> conns_;
};

class TcpStore : public Store {
 public:
  // Connects to host:port, retrying until `timeout` (node 0 may start later). With start_server,
  // first starts the server on that address (node 0); port 0 then picks a free one.
  TcpStore(const std::string& host, int port, std::chrono::milliseconds timeout, bool start_server = false);
  ~TcpStore() override;

  void set(const std::string& key, const Bytes& value) override;
  Bytes get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  using Store::wait;
  bool check(const std::string& key) override;
  void abort(const std::string& reason) override;

  int port() const { return port_; }
  // This host's address as the server sees it (what peers on other nodes can reach).
  std::string local_address() const override { return local_address_; }

 private:
  struct Reply {
    uint8_t status;
    Bytes data;
  };
  Reply request(uint8_t op, const std::vector<std::string>& keys, const Bytes& value, uint64_t arg,
                std::chrono::milliseconds io_timeout);
  int open_connection(std::chrono::milliseconds timeout);

  std::string host_;
  int port_ = 0;
  std::string local_address_;
  std::unique_ptr<TcpStoreServer> server_;
  std::mutex pool_mu_;
  std::vector<int> idle_;  // connections not in use; a blocking wait holds one, others open more
};

}  // namespace loom::parallel
