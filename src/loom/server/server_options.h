// The HTTP server's settings (loom serve's flags; tests shorten the timeouts).
#pragma once
#include <chrono>
#include <cstddef>
#include <string>

namespace loom::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 30000;                    // 0 = any free port (see bind())
  std::string api_key;                 // non-empty: every endpoint but /health needs it
  std::string served_model_name;
  size_t max_request_bytes = 4 << 20;  // larger bodies get 413
  int http_threads = 4;                // I/O threads; every connection is served by them, none waits for a thread
  std::chrono::milliseconds shutdown_grace{10000};  // in-flight requests may finish this long
  std::string tool_call_parser;  // --tool-call-parser: "" (off), qwen3, hermes
  std::string reasoning_parser;  // --reasoning-parser: "" (off), qwen3
  // Against slow clients (slow-loris and stalled readers): each expiry closes the connection,
  // with a 408 when nothing was sent yet.
  std::chrono::milliseconds header_timeout{30000};  // from accept (or a keep-alive request's first byte) to a whole header
  std::chrono::milliseconds body_timeout{60000};    // from the header to a whole body
  std::chrono::milliseconds idle_timeout{5000};     // a keep-alive connection's wait for its next request
  std::chrono::milliseconds write_timeout{30000};   // one write that cannot progress (a client that stopped reading)
  // SO_SNDBUF of each connection; 0 leaves it to the kernel's autotuning (up to tcp_wmem's 4 MiB
  // on Debian). Tests make it small so that a reader that stops stalls the server's writes at once.
  int socket_send_buffer = 0;
};

}  // namespace loom::server
