// The OpenAI-compatible HTTP front end of an Engine (cpp-httplib, one thread per connection):
// POST /v1/completions and /v1/chat/completions (JSON or SSE), GET /v1/models, /health, /metrics.
// Every error is answered with an OpenAI-shaped body; a streaming client that goes away aborts
// its request.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "loom/engine/engine.h"
#include "loom/server/openai_protocol.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace loom::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 30000;                    // 0 = any free port (see bind())
  std::string api_key;                 // non-empty: every endpoint but /health needs it
  std::string served_model_name;
  size_t max_request_bytes = 4 << 20;  // larger bodies get 413
  int http_threads = 128;              // concurrent connections served
  std::chrono::milliseconds shutdown_grace{10000};  // in-flight requests may finish this long
  std::string tool_call_parser;  // --tool-call-parser: "" (off), qwen3, hermes
  std::string reasoning_parser;  // --reasoning-parser: "" (off), qwen3
};

class HttpServer {
 public:
  HttpServer(engine::Engine& engine, ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port (the chosen one when options.port is 0).
  int bind();
  // Serves until stop(); call bind() first.
  void serve();
  // Graceful stop, from any thread: refuse new requests (503), let in-flight ones finish for at
  // most the shutdown grace, abort the rest, then close the listener so serve() returns.
  void stop();

 private:
  void install_routes();
  void handle_generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void stream(const ParsedRequest& parsed, const std::vector<uint64_t>& engine_ids,
              std::shared_ptr<class RequestChannel> channel,
              httplib::Response& res);
  bool authorized(const httplib::Request& req) const;
  void count_response(int status);

  engine::Engine& engine_;
  ServerOptions options_;
  ProtocolContext protocol_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = -1;  // the bound port (bind())
  std::mutex counters_mu_;
  std::map<int, uint64_t> responses_by_status_;
  std::atomic<int> open_streams_{0};  // SSE responses not yet finished
  std::mutex stop_mu_;
  bool stopped_ = false;
};

}  // namespace loom::server
