// The OpenAI-compatible HTTP front end of an Engine (Boost.Beast over Asio: a few I/O threads
// serve every connection asynchronously): POST /v1/completions and /v1/chat/completions (JSON or
// SSE), GET /v1/models, /health, /metrics, /openapi.json. Every error is answered with an
// OpenAI-shaped body; a client that goes away, streaming or not, aborts its request.
// The parts: request_router (routing, auth, body parsing), api_service (the engine's side),
// http_framing (Beast's parser and the limits), http_session (one connection), this (listener,
// I/O threads, graceful stop).
#pragma once
#include <memory>
#include <mutex>

#include "loom/engine/engine.h"
#include "loom/server/openai_protocol.h"  // kept for includers that relied on it
#include "loom/server/server_options.h"

namespace loom::server {

class HttpServer {
 public:
  HttpServer(engine::Engine& engine, ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port (the chosen one when options.port is 0).
  int bind();
  // Serves until stop() on options.http_threads I/O threads (this one among them); call bind() first.
  void serve();
  // Graceful stop, from any thread: refuse new requests (503), let in-flight ones finish for at
  // most the shutdown grace, abort the rest, then close the listener and every connection so
  // serve() returns.
  void stop();

 private:
  struct Io;  // Asio's objects, kept out of this header
  engine::Engine& engine_;
  ServerOptions options_;
  std::unique_ptr<Io> io_;
  std::mutex stop_mu_;
  bool stopped_ = false;
};

}  // namespace loom::server
