#include "loom/parallel/tcp_store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "loom/parallel/peer_failure.h"

namespace loom::parallel {
namespace {

enum Op : uint8_t { kSet = 1, kGetNow = 2, kWait = 3, kCheck = 4, kAbort = 5 };
enum Status : uint8_t { kOk = 0, kMissing = 1, kAborted = 2 };

// Whole-buffer socket I/O; false on EOF, error or receive timeout.
bool send_all(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}
bool recv_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t k = ::recv(fd, c, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

// Message framing: fixed-width integers in host order (all nodes run the same binary on x86/arm LE).
void put_bytes(Bytes& b, const void* p, size_t n) {
  const size_t at = b.size();
  b.resize(at + n);
  if (n > 0) std::memcpy(b.data() + at, p, n);
}
void put_u64(Bytes& b, uint64_t v) { put_bytes(b, &v, 8); }
void put_blob(Bytes& b, const char* p, size_t n) {
  put_u64(b, n);
  put_bytes(b, p, n);
}
bool read_u64(int fd, uint64_t& v) { return recv_all(fd, &v, 8); }
bool read_blob(int fd, Bytes& out) {
  uint64_t n;
  if (!read_u64(fd, n) || n > (1ull << 32)) return false;
  out.resize(n);
  return n == 0 || recv_all(fd, out.data(), n);
}

addrinfo* resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0)
    throw Error(loom::str("store: cannot resolve '", host, ":", port, "': ", gai_strerror(rc)));
  return res;
}

void set_recv_timeout(int fd, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

}  // namespace

// ---------------------------------------------------------------- server

TcpStoreServer::TcpStoreServer(const std::string& host, int port) {
  addrinfo* res = resolve(host, port, true);
  std::string last_error = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 256) == 0) {
      listen_fd_ = fd;
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0)
    throw Error(loom::str("store: cannot listen on ", host, ":", port, " (--dist-init-addr): ", last_error));
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  stop_ = true;
  data_.abort("the store server on node 0 shut down");
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : conns_) t.join();
  for (int fd : conn_fds_) ::close(fd);
  ::close(listen_fd_);
}

void TcpStoreServer::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> lock(mu_);
    conn_fds_.push_back(fd);
    conns_.emplace_back([this, fd] { serve(fd); });
  }
}

void TcpStoreServer::serve(int fd) {
  while (!stop_) {
    uint8_t op;
    uint64_t nkeys, arg;
    if (!recv_all(fd, &op, 1) || !read_u64(fd, nkeys) || nkeys > 1000000) return;
    std::vector<std::string> keys(nkeys);
    for (auto& k : keys) {
      Bytes b;
      if (!read_blob(fd, b)) return;
      k.assign(b.begin(), b.end());
    }
    Bytes value;
    if (!read_blob(fd, value) || !read_u64(fd, arg)) return;

    uint8_t status = kOk;
    Bytes out;
    try {
      switch (op) {
        case kSet: data_.set(keys.at(0), value); break;
        case kGetNow:
          if (data_.check(keys.at(0))) out = data_.get(keys.at(0));
          else status = kMissing;
          break;
        case kWait: data_.wait(keys, std::chrono::milliseconds(arg)); break;
        case kCheck: status = data_.check(keys.at(0)) ? kOk : kMissing; break;
        case kAbort: data_.abort(std::string(value.begin(), value.end())); break;
        default: return;  // not our protocol: drop the connection
      }
    } catch (const std::exception& e) {
      // A wait that timed out or was aborted: the message goes back to the client.
      status = std::strstr(e.what(), "aborted") ? kAborted : kMissing;
      std::string m = e.what();
      out.assign(m.begin(), m.end());
    }
    Bytes reply(1, static_cast<char>(status));
    put_blob(reply, out.data(), out.size());
    if (!send_all(fd, reply.data(), reply.size())) return;
  }
}

// ---------------------------------------------------------------- client

TcpStore::TcpStore(const std::string& host, int port, std::chrono::milliseconds timeout, bool start_server)
    : host_(host), port_(port) {
  timeout_ = timeout;
  if (start_server) {
    server_ = std::make_unique<TcpStoreServer>(host, port);
    port_ = server_->port();
  }
  int fd = open_connection(timeout);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  char buf[INET6_ADDRSTRLEN] = {0};
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET6)
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof(buf));
    else
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof(buf));
  }
  local_address_ = buf[0] ? buf : "127.0.0.1";
  idle_.push_back(fd);
}

TcpStore::~TcpStore() {
  for (int fd : idle_) ::close(fd);
}

int TcpStore::open_connection(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last_error;
  for (;;) {
    addrinfo* res = resolve(host_, port_, false);
    for (addrinfo* a = res; a; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        ::freeaddrinfo(res);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
      }
      last_error = std::strerror(errno);
      ::close(fd);
    }
    ::freeaddrinfo(res);
    if (std::chrono::steady_clock::now() >= deadline)
      throw PeerFailure(loom::str("store: cannot reach node 0 at ", host_, ":", port_, " (--dist-init-addr) within ",
                                  timeout.count() / 1000.0, " s (--dist-timeout): ", last_error));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

TcpStore::Reply TcpStore::request(uint8_t op, const std::vector<std::string>& keys, const Bytes& value,
                                  uint64_t arg, std::chrono::milliseconds io_timeout) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    fd = -1;
    if (!idle_.empty()) {
      fd = idle_.back();
      idle_.pop_back();
    }
  }
  if (fd < 0) fd = open_connection(timeout_);
  Bytes msg(1, static_cast<char>(op));
  put_u64(msg, keys.size());
  for (const auto& k : keys) put_blob(msg, k.data(), k.size());
  put_blob(msg, value.data(), value.size());
  put_u64(msg, arg);
  // The server answers a wait within its timeout; the margin covers a slow network.
  set_recv_timeout(fd, io_timeout + std::chrono::seconds(10));
  Reply r{};
  bool ok = send_all(fd, msg.data(), msg.size()) && recv_all(fd, &r.status, 1) && read_blob(fd, r.data);
  if (!ok) {
    ::close(fd);
    throw PeerFailure(loom::str("store: lost the connection to node 0 at ", host_, ":", port_,
                                " (did node 0 exit?)"));
  }
  std::lock_guard<std::mutex> lock(pool_mu_);
  idle_.push_back(fd);
  return r;
}

void TcpStore::set(const std::string& key, const Bytes& value) {
  request(kSet, {key}, value, 0, timeout_);
}

Bytes TcpStore::get(const std::string& key) {
  wait({key}, timeout_);
  Reply r = request(kGetNow, {key}, {}, 0, timeout_);
  if (r.status != kOk) throw Error(loom::str("store: key '", key, "' vanished"));
  return r.data;
}

void TcpStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  Reply r = request(kWait, keys, {}, static_cast<uint64_t>(timeout.count()), timeout);
  if (r.status != kOk) throw PeerFailure(std::string(r.data.begin(), r.data.end()));
}

bool TcpStore::check(const std::string& key) { return request(kCheck, {key}, {}, 0, timeout_).status == kOk; }

void TcpStore::abort(const std::string& reason) {
  request(kAbort, {"-"}, Bytes(reason.begin(), reason.end()), 0, timeout_);
}

}  // namespace loom::parallel
