// Reaching sockets that cpp-httplib 0.11 (Debian's compiled library) does not expose: they are
// found among this process's descriptors (/proc/self/fd) by their addresses.
//
// PeerWatch tells a handler that its client has closed the connection: httplib gives a handler
// neither its socket nor a "closed" flag, so the socket is found by its peer address (the
// request's remote_addr/remote_port) and polled. The descriptor stays ours while the handler
// runs: httplib closes it only after the handler returns.
#pragma once
#include <string>

namespace loom::server {

class PeerWatch {
 public:
  // local_port: the server's port, so that an in-process client's own socket never matches.
  PeerWatch(const std::string& remote_addr, int remote_port, int local_port);
  bool found() const { return fd_ >= 0; }
  // True once the peer closed or reset the connection (data it sent early does not count).
  bool gone() const;

 private:
  int fd_ = -1;
};

// httplib's listen backlog is fixed at 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled in), so a burst of
// a few hundred connects overflows the accept queue. listen() again on the bound socket raises
// it to SOMAXCONN (Linux allows it).
void widen_listen_backlog(int port);

}  // namespace loom::server
