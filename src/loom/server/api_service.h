// The server's side of each endpoint, knowing nothing of sockets: answers for the routes that
// need no generation, submission of the generating ones to the engine (one engine request per
// choice, all feeding one RequestChannel), aborts, and the per-status response counts /metrics shows.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "loom/engine/engine.h"
#include "loom/server/api_error.h"
#include "loom/server/request_channel.h"
#include "loom/server/request_router.h"
#include "loom/server/server_options.h"

namespace loom::server {

// A whole response body with its status and type.
struct Reply {
  int status = 200;
  std::string content_type;
  std::string body;
};
Reply json_reply(int status, const nlohmann::json& body);
Reply error_reply(const ApiError& e);

// A generating request handed to the engine.
struct Submission {
  std::shared_ptr<RequestChannel> channel;
  std::vector<uint64_t> engine_ids;  // one per choice
};

class ApiService {
 public:
  ApiService(engine::Engine& engine, const ServerOptions& options);

  const RouterConfig& router() const { return router_; }
  const tokenizer::Tokenizer& tokenizer() const { return engine_.tokenizer(); }
  // /health, /v1/models, /metrics, /openapi.json.
  Reply answer(Route route);
  // Submits `parsed` best_of times (seed + i each when seeded); `on_ready` wakes the connection
  // when outputs arrive (engine thread). Throws ApiError for every refusal (400, 503 ...), with
  // the choices submitted before it aborted.
  Submission submit(const ParsedRequest& parsed, std::function<void()> on_ready);
  // Ends every choice; each frees its KV on the engine's next turn.
  void abort(const Submission& s);
  void count_response(int status);

  // Generations whose response is not fully written yet (a graceful stop lets them flush).
  std::atomic<int> open_generations{0};

 private:
  engine::Engine& engine_;
  std::string served_model_name_;
  ProtocolContext protocol_;
  RouterConfig router_;
  std::mutex counters_mu_;
  std::map<int, uint64_t> responses_by_status_;
};

}  // namespace loom::server
