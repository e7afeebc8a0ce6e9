// 2,000 streaming clients at once on a server with four I/O threads (issue 15): every one is
// accepted, streamed to `data: [DONE]`, and the server's threads and memory stay bounded. Label
// server_load (registered apart from the other server tests in tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "raw_client.h"
#include "server_harness.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;

struct StreamClient {
  int fd = -1;
  std::string request;
  size_t sent = 0;
  std::string in;
  bool headed = false, done = false, closed = false;
};

TEST(ServerLoad, TwoThousandConcurrentStreamsAllGetDone) {
  constexpr int kClients = 2000;
  ASSERT_TRUE(raise_fd_limit(2 * kClients + 256)) << "this test needs " << 2 * kClients + 256 << " descriptors";
  HarnessOptions o;
  o.max_queue = 4096;
  o.max_running_requests = 256;
  o.configure_server = [](ServerOptions& so) { so.http_threads = 4; };
  ServerHarness h(o);
  // One request first: the I/O threads and the BLAS threads of a batch exist from then on.
  ASSERT_EQ(post(h.port(), "/v1/completions", {{"prompt", "warm up"}, {"max_tokens", 2}}).status, 200);
  const long threads_before = proc_status("Threads");
  const long rss_before_kb = proc_status("VmRSS");

  std::vector<StreamClient> clients(kClients);
  for (int i = 0; i < kClients; ++i) {
    const std::string body =
        json{{"prompt", "stream " + std::to_string(i)}, {"max_tokens", 3}, {"ignore_eos", true}, {"stream", true}}.dump();
    clients[i].request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                         "Content-Type: application/json\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body;
    clients[i].fd = connect_loopback(h.port(), 0, /*nonblocking=*/true);
  }

  // One thread drives every client with poll: send the request, read until the server closes.
  int headed = 0, done = 0, closed = 0, max_open_streams = 0;
  long max_threads = threads_before, max_rss_kb = rss_before_kb;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::vector<pollfd> fds;
  std::vector<int> who;
  while (closed < kClients && std::chrono::steady_clock::now() < deadline) {
    fds.clear();
    who.clear();
    for (int i = 0; i < kClients; ++i) {
      auto& c = clients[i];
      if (c.closed) continue;
      fds.push_back({c.fd, static_cast<short>(POLLIN | (c.sent < c.request.size() ? POLLOUT : 0)), 0});
      who.push_back(i);
    }
    if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (size_t k = 0; k < fds.size(); ++k) {
      auto& c = clients[who[k]];
      if ((fds[k].revents & POLLOUT) && c.sent < c.request.size()) {
        const ssize_t n = ::send(c.fd, c.request.data() + c.sent, c.request.size() - c.sent, MSG_NOSIGNAL);
        if (n > 0) c.sent += static_cast<size_t>(n);
      }
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EAGAIN) {
        c.closed = true;
        ++closed;
        ::close(c.fd);
      }
      if (!c.headed && c.in.find("\r\n\r\n") != std::string::npos) {
        c.headed = true;
        ++headed;
      }
      if (!c.done && c.in.find("data: [DONE]\n\n") != std::string::npos) {
        c.done = true;
        ++done;
      }
    }
    max_open_streams = std::max(max_open_streams, headed - done);
    max_threads = std::max(max_threads, proc_status("Threads"));
    max_rss_kb = std::max(max_rss_kb, proc_status("VmRSS"));
  }

  int ok = 0;
  for (const auto& c : clients) ok += c.done && c.in.rfind("HTTP/1.1 200", 0) == 0 && c.in.find("text/event-stream") != std::string::npos;
  EXPECT_EQ(ok, kClients) << "of " << kClients << " streams, " << ok << " ended with [DONE]";
  // A thread-per-connection server of 128 threads held 128 streams open at most.
  EXPECT_GT(max_open_streams, 1000) << "streams open at once";
  EXPECT_EQ(max_threads, threads_before) << "the server started threads per connection";
  // Most of the growth is the engine's (a decode batch of 256 has 256 x 151936 fp32 logits, 155 MB).
  EXPECT_LT(max_rss_kb - rss_before_kb, 512 * 1024) << "RSS grew by " << (max_rss_kb - rss_before_kb) / 1024 << " MB";
  std::printf("%d streams served; at most %d open at once; threads %ld (before: %ld); RSS +%ld MB\n", ok,
              max_open_streams, max_threads, threads_before, (max_rss_kb - rss_before_kb) / 1024);
}

}  // namespace
}  // namespace loom::server::testing
