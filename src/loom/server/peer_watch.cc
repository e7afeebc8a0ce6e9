#include "loom/server/peer_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>

namespace loom::server {
namespace {

// The address and port of a socket address, as httplib writes remote_addr ("127.0.0.1", "::1").
bool address_of(const sockaddr_storage& a, std::string& host, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    if (!inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf)) return false;
    port = ntohs(in->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    if (!inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf)) return false;
    port = ntohs(in6->sin6_port);
  } else {
    return false;
  }
  host = buf;
  return true;
}

// Calls `visit(fd, self)` for each socket descriptor of this process with a known address until it
// returns true.
template <typename Visit>
void for_each_socket(Visit visit) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return;
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long n = std::strtol(e->d_name, &end, 10);
    const int fd = static_cast<int>(n);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage self{};
    socklen_t sl = sizeof self;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) continue;
    if (visit(fd, self)) break;
  }
  ::closedir(dir);
}

}  // namespace

PeerWatch::PeerWatch(const std::string& remote_addr, int remote_port, int local_port) {
  for_each_socket([&](int fd, const sockaddr_storage& self) {
    sockaddr_storage peer{};
    socklen_t pl = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return false;
    std::string host, self_host;
    int port = -1, self_port = -1;
    if (!address_of(peer, host, port) || !address_of(self, self_host, self_port)) return false;
    if (port != remote_port || self_port != local_port || host != remote_addr) return false;
    fd_ = fd;
    return true;
  });
}

void widen_listen_backlog(int port) {
  for_each_socket([&](int fd, const sockaddr_storage& self) {
    int listening = 0;
    socklen_t len = sizeof listening;
    std::string host;
    int bound = -1;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) return false;
    if (!address_of(self, host, bound) || bound != port) return false;
    ::listen(fd, SOMAXCONN);
    return true;
  });
}

bool PeerWatch::gone() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
  char c;
  return (p.revents & POLLIN) && ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;  // orderly close
}

}  // namespace loom::server
