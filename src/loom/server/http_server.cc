#include "loom/server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <optional>
#include <random>
#include <thread>

#include "loom/server/api_error.h"
#include "loom/server/metrics_text.h"
#include "loom/server/openapi.h"
#include "loom/server/peer_watch.h"
#include "loom/server/request_channel.h"

namespace loom::server {
namespace {

constexpr auto kHeartbeat = std::chrono::milliseconds(500);  // SSE comment while no token comes

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_response_id(Endpoint endpoint) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s%08llx%08llx", endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-",
                static_cast<unsigned long long>(salt & 0xffffffffu), static_cast<unsigned long long>(++counter));
  return buf;
}

// Error messages may quote a client's invalid UTF-8 (a parse error's context): it is replaced with
// U+FFFD rather than making the dump throw (found by schemathesis).
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status(), e.body()); }

std::string sse_event(const nlohmann::json& j) { return "data: " + dump(j) + "\n\n"; }

// Status codes httplib answers itself (bad paths, oversized bodies, ...) get an OpenAI body too.
ApiError error_for_status(const httplib::Request& req, int status, size_t max_bytes) {
  switch (status) {
    case 404: return ApiError(404, "invalid_request_error", str("no route for ", req.method, " ", req.path), "", "not_found");
    case 405: return ApiError(405, "invalid_request_error", str("method ", req.method, " is not allowed on ", req.path));
    case 413:
      return ApiError(413, "invalid_request_error", str("the request body is larger than the limit of ", max_bytes, " bytes"),
                      "", "request_too_large");
    case 414: return ApiError(414, "invalid_request_error", "the request URI is too long");
    default: return ApiError(status, status < 500 ? "invalid_request_error" : "server_error", str("HTTP error ", status));
  }
}

}  // namespace

HttpServer::HttpServer(engine::Engine& engine, ServerOptions options)
    : engine_(engine), options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  LOOM_CHECK_ARG(options_.http_threads >= 1, "--http-threads must be at least 1");
  protocol_.tokenizer = &engine_.tokenizer();
  protocol_.limits = engine_.limits();
  protocol_.grammar = &engine_.grammar();
  protocol_.served_model_name = options_.served_model_name;
  LOOM_CHECK_ARG(known_tool_call_parser(options_.tool_call_parser), "--tool-call-parser: unknown '",
                 options_.tool_call_parser, "' (allowed: qwen3, hermes)");
  LOOM_CHECK_ARG(known_reasoning_parser(options_.reasoning_parser), "--reasoning-parser: unknown '",
                 options_.reasoning_parser, "' (allowed: qwen3)");
  protocol_.tool_call_parser = options_.tool_call_parser;
  protocol_.reasoning_parser = options_.reasoning_parser;
  const int threads = options_.http_threads;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http_->set_payload_max_length(options_.max_request_bytes);
  http_->set_keep_alive_timeout(2);  // idle keep-alive connections hold a thread; keep them short
  install_routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  int port;
  if (options_.port == 0) {
    port = http_->bind_to_any_port(options_.host);
  } else {
    port = http_->bind_to_port(options_.host, options_.port) ? options_.port : -1;
  }
  LOOM_CHECK(port > 0, "cannot listen on ", options_.host, ":", options_.port, " (address in use or not local?)");
  widen_listen_backlog(port);
  port_ = port;
  return port;
}

void HttpServer::serve() {
  {
    std::lock_guard<std::mutex> g(stop_mu_);
    if (stopped_) return;  // stopped before it started: httplib's stop() would not reach it
  }
  http_->listen_after_bind();
}

void HttpServer::stop() {
  std::lock_guard<std::mutex> g(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  engine_.shutdown(options_.shutdown_grace);
  // Every request has ended now; give the streams a moment to send their last events.
  for (int i = 0; i < 200 && open_streams_.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  http_->stop();
}

namespace {
// Equal strings, in a time that depends on their lengths only (no early exit at the first
// difference a client could time to guess the key byte by byte).
bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}
}  // namespace

bool HttpServer::authorized(const httplib::Request& req) const {
  return options_.api_key.empty() || req.path == "/health" ||
         constant_time_equal(req.get_header_value("Authorization"), "Bearer " + options_.api_key);
}

void HttpServer::count_response(int status) {
  std::lock_guard<std::mutex> g(counters_mu_);
  ++responses_by_status_[status];
}

void HttpServer::install_routes() {
  using httplib::Server;
  http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req)) return Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "invalid_request_error",
                             "a valid API key is required: send 'Authorization: Bearer <key>'", "", "invalid_api_key"));
    return Server::HandlerResponse::Handled;
  });
  http_->set_error_handler(Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.content_provider_) return Server::HandlerResponse::Unhandled;
    send_error(res, error_for_status(req, res.status, options_.max_request_bytes));
    return Server::HandlerResponse::Handled;
  }));
  http_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "server_error", str("internal error: ", what)));
  });
  http_->set_logger([this](const httplib::Request&, const httplib::Response& res) { count_response(res.status); });

  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (const std::string f = engine_.runner_failure(); !f.empty()) {
      send_error(res, ApiError(503, "server_error", str("the model runner has stopped: ", f), "", "runner_stopped"));
    } else if (engine_.accepting()) {
      send_json(res, 200, {{"status", "ok"}});
    } else {
      send_error(res, ApiError(503, "server_error", "the server is shutting down", "", "shutting_down"));
    }
  });
  http_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    nlohmann::json model = {{"id", options_.served_model_name},
                            {"object", "model"},
                            {"created", 0},
                            {"owned_by", "loom"},
                            {"max_model_len", engine_.limits().context_length}};
    send_json(res, 200, {{"object", "list"}, {"data", nlohmann::json::array({model})}});
  });
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::map<int, uint64_t> responses;
    {
      std::lock_guard<std::mutex> g(counters_mu_);
      responses = responses_by_status_;
    }
    res.set_content(render_metrics(engine_.stats(), options_.served_model_name, responses),
                    "text/plain; version=0.0.4");
  });
  http_->Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(openapi_json(), "application/json");
  });
  http_->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Endpoint::completions, req, res);
  });
  http_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_generate(Endpoint::chat, req, res);
  });
}

void HttpServer::handle_generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  ParsedRequest parsed;
  std::shared_ptr<RequestChannel> channel;
  std::vector<uint64_t> engine_ids;  // one per choice
  try {
    parsed = parse_request(endpoint, req.body, protocol_);
    channel = std::make_shared<RequestChannel>(parsed.best_of);
    static std::atomic<uint64_t> next_group{1};
    const uint64_t group = parsed.best_of > 1 ? next_group++ : 0;
    for (int i = 0; i < parsed.best_of; ++i) {  // the same request best_of times, each its own seed
      engine::Request r = parsed.request;
      r.prefix_group = group;  // prefilled once, shared through the prefix cache
      if (r.params.seed && i > 0) r.params.seed = *r.params.seed + static_cast<uint64_t>(i);
      r.on_output = [channel, i](const engine::RequestOutput& out) { channel->push(i, out); };
      engine_ids.push_back(engine_.submit(std::move(r)));
    }
  } catch (...) {
    for (uint64_t id : engine_ids) engine_.abort(id);  // the choices submitted before one was refused
    try {
      throw;
    } catch (const ApiError& e) {
      return send_error(res, e);
    } catch (const engine::RequestError& e) {
      return send_error(res, bad_request(e.param(), e.what()));
    } catch (const engine::QueueFull& e) {
      return send_error(res, ApiError(503, "server_error", e.what(), "", "queue_full"));
    } catch (const engine::ShuttingDown& e) {
      return send_error(res, ApiError(503, "server_error", e.what(), "", "shutting_down"));
    } catch (const engine::RunnerStopped& e) {
      return send_error(res, ApiError(503, "server_error", e.what(), "", "runner_stopped"));
    } catch (const InvalidArgument& e) {
      return send_error(res, bad_request("", e.what()));
    }
  }

  if (parsed.stream) return stream(parsed, engine_ids, channel, res);

  std::vector<Generation> choices(parsed.best_of);
  const auto all_finished = [&] {
    for (const auto& g : choices)
      if (g.finish_reason == engine::FinishReason::none) return false;
    return true;
  };
  // A client that leaves before the answer is complete has its choices aborted (their KV is freed
  // on the engine's next turn): there is nobody to send the answer to.
  const PeerWatch peer(req.remote_addr, req.remote_port, port_);
  while (!all_finished()) {
    if (peer.gone()) {
      for (uint64_t id : engine_ids) engine_.abort(id);
      res.status = 499;  // nginx's "client closed request", for the log and /metrics only
      return;
    }
    for (const auto& [i, out] : channel->take(std::chrono::milliseconds(100))) {
      choices[i].add(out);
      if (out.finish_reason == engine::FinishReason::error) {
        for (uint64_t id : engine_ids) engine_.abort(id);
        return send_error(res, ApiError(500, "server_error", str("generation failed: ", out.error)));
      }
    }
  }
  if (parsed.best_of > parsed.n) {
    const Generation usage = combined_usage(choices);  // every candidate was generated
    return send_json(res, 200, response_json(parsed, new_response_id(endpoint), unix_time(),
                                             best_choices(std::move(choices), parsed.n), engine_.tokenizer(), &usage));
  }
  send_json(res, 200, response_json(parsed, new_response_id(endpoint), unix_time(), choices, engine_.tokenizer()));
}

// Server-sent events: one chunk per engine output that carries text (or logprobs, or the finish
// reason), the usage chunk when asked for, then `data: [DONE]`. A failed write means the client
// is gone: the request is aborted, which frees its KV on the engine's next turn.
void HttpServer::stream(const ParsedRequest& parsed, const std::vector<uint64_t>& engine_ids,
                        std::shared_ptr<RequestChannel> channel, httplib::Response& res) {
  struct State {
    ParsedRequest parsed;
    std::string id;
    int64_t created;
    std::vector<Generation> totals;  // per choice
    std::vector<bool> first;         // per choice: no chunk sent yet
    std::vector<ChatOutputParser> parsers;  // per choice, when reasoning or tool calls are parsed
    int unfinished = 0;
  };
  auto st = std::make_shared<State>();
  st->parsed.endpoint = parsed.endpoint;
  st->parsed.include_usage = parsed.include_usage;
  st->parsed.want_logprobs = parsed.want_logprobs;
  st->parsed.model = parsed.model;
  st->parsed.echo_text = parsed.echo_text;
  st->parsed.parse_reasoning = parsed.parse_reasoning;
  st->parsed.reasoning_open = parsed.reasoning_open;
  st->parsed.parse_tool_calls = parsed.parse_tool_calls;
  if (parsed.parse_reasoning || parsed.parse_tool_calls)
    st->parsers.assign(parsed.n, ChatOutputParser(parsed.parse_reasoning, parsed.parse_tool_calls, parsed.reasoning_open));
  st->id = new_response_id(parsed.endpoint);
  st->created = unix_time();
  st->totals.resize(parsed.n);
  st->first.assign(parsed.n, true);
  st->unfinished = parsed.n;
  ++open_streams_;
  res.set_header("Cache-Control", "no-cache");
  const tokenizer::Tokenizer& tok = engine_.tokenizer();
  res.set_chunked_content_provider(
      "text/event-stream",
      [st, channel, &tok](size_t, httplib::DataSink& sink) {
        const auto outputs = channel->take(kHeartbeat);
        if (outputs.empty()) return sink.write(":\n\n", 3);  // an SSE comment: finds departed clients
        for (const auto& [i, out] : outputs) {
          if (out.finish_reason == engine::FinishReason::error) {
            const std::string err = sse_event(error_body("server_error", str("generation failed: ", out.error), "", ""));
            sink.write(err.data(), err.size());
            sink.write("data: [DONE]\n\n", 14);
            sink.done();
            return true;
          }
          Generation delta;
          delta.add(out);
          st->totals[i].add(out);
          std::optional<ChatDelta> split;  // the delta through the reasoning / tool-call parser
          if (!st->parsers.empty()) {
            split = st->parsers[i].push(delta.text);
            if (out.finished) {
              ChatDelta end = st->parsers[i].finish();
              split->reasoning += end.reasoning;
              split->content += end.content;
              for (auto& c : end.tool_calls) split->tool_calls.push_back(std::move(c));
            }
          }
          const bool carries = split ? !split->empty() : !delta.text.empty();
          if (st->first[i] || out.finished || carries || !delta.logprobs.empty()) {
            const bool called = !st->parsers.empty() && st->parsers[i].saw_tool_call();
            const std::string ev = sse_event(chunk_json(st->parsed, st->id, st->created, delta, st->first[i], tok, i,
                                                        split ? &*split : nullptr, called));
            st->first[i] = false;
            if (!sink.write(ev.data(), ev.size())) return false;
          }
          if (out.finished && --st->unfinished == 0) {  // the last choice ended
            if (st->parsed.include_usage) {
              const std::string ev =
                  sse_event(usage_chunk_json(st->parsed, st->id, st->created, combined_usage(st->totals)));
              if (!sink.write(ev.data(), ev.size())) return false;
            }
            if (!sink.write("data: [DONE]\n\n", 14)) return false;
            sink.done();
            return true;
          }
        }
        return true;
      },
      [this, channel, engine_ids](bool) {
        if (!channel->finished())  // the client left (or a choice failed): stop every choice
          for (uint64_t id : engine_ids) engine_.abort(id);
        --open_streams_;
      });
}

}  // namespace loom::server
