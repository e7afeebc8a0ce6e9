#include "loom/server/api_service.h"

#include "loom/server/generation_output.h"
#include "loom/server/metrics_text.h"
#include "loom/server/openapi.h"

namespace loom::server {

Reply json_reply(int status, const nlohmann::json& body) { return {status, "application/json", dump_json(body)}; }

Reply error_reply(const ApiError& e) { return json_reply(e.status(), e.body()); }

ApiService::ApiService(engine::Engine& engine, const ServerOptions& options)
    : engine_(engine), served_model_name_(options.served_model_name) {
  protocol_.tokenizer = &engine_.tokenizer();
  protocol_.limits = engine_.limits();
  protocol_.grammar = &engine_.grammar();
  protocol_.served_model_name = options.served_model_name;
  LOOM_CHECK_ARG(known_tool_call_parser(options.tool_call_parser), "--tool-call-parser: unknown '",
                 options.tool_call_parser, "' (allowed: qwen3, hermes)");
  LOOM_CHECK_ARG(known_reasoning_parser(options.reasoning_parser), "--reasoning-parser: unknown '",
                 options.reasoning_parser, "' (allowed: qwen3)");
  protocol_.tool_call_parser = options.tool_call_parser;
  protocol_.reasoning_parser = options.reasoning_parser;
  router_.api_key = options.api_key;
  router_.protocol = &protocol_;
}

Reply ApiService::answer(Route route) {
  switch (route) {
    case Route::health:
      if (const std::string f = engine_.runner_failure(); !f.empty())
        return error_reply(ApiError(503, "server_error", str("the model runner has stopped: ", f), "", "runner_stopped"));
      if (engine_.accepting()) return json_reply(200, {{"status", "ok"}});
      return error_reply(ApiError(503, "server_error", "the server is shutting down", "", "shutting_down"));
    case Route::models: {
      nlohmann::json model = {{"id", served_model_name_},
                              {"object", "model"},
                              {"created", 0},
                              {"owned_by", "loom"},
                              {"max_model_len", engine_.limits().context_length}};
      return json_reply(200, {{"object", "list"}, {"data", nlohmann::json::array({model})}});
    }
    case Route::metrics: {
      std::map<int, uint64_t> responses;
      {
        std::lock_guard<std::mutex> g(counters_mu_);
        responses = responses_by_status_;
      }
      return {200, "text/plain; version=0.0.4", render_metrics(engine_.stats(), served_model_name_, responses)};
    }
    case Route::openapi: return {200, "application/json", openapi_json()};
    case Route::completions:
    case Route::chat: break;
  }
  throw Error("ApiService::answer: a generating route has no fixed answer");
}

Submission ApiService::submit(const ParsedRequest& parsed, std::function<void()> on_ready) {
  Submission s;
  s.channel = std::make_shared<RequestChannel>(parsed.best_of, std::move(on_ready));
  try {
    static std::atomic<uint64_t> next_group{1};
    const uint64_t group = parsed.best_of > 1 ? next_group++ : 0;
    for (int i = 0; i < parsed.best_of; ++i) {
      engine::Request r = parsed.request;
      r.prefix_group = group;  // prefilled once, shared through the prefix cache
      if (r.params.seed && i > 0) r.params.seed = *r.params.seed + static_cast<uint64_t>(i);
      r.on_output = [channel = s.channel, i](const engine::RequestOutput& out) { channel->push(i, out); };
      s.engine_ids.push_back(engine_.submit(std::move(r)));
    }
  } catch (...) {
    abort(s);  // the choices submitted before one was refused
    try {
      throw;
    } catch (const engine::RequestError& e) {
      throw bad_request(e.param(), e.what());
    } catch (const engine::QueueFull& e) {
      throw ApiError(503, "server_error", e.what(), "", "queue_full");
    } catch (const engine::ShuttingDown& e) {
      throw ApiError(503, "server_error", e.what(), "", "shutting_down");
    } catch (const engine::RunnerStopped& e) {
      throw ApiError(503, "server_error", e.what(), "", "runner_stopped");
    } catch (const ApiError&) {
      throw;
    } catch (const InvalidArgument& e) {
      throw bad_request("", e.what());
    }
  }
  return s;
}

void ApiService::abort(const Submission& s) {
  for (uint64_t id : s.engine_ids) engine_.abort(id);
}

void ApiService::count_response(int status) {
  std::lock_guard<std::mutex> g(counters_mu_);
  ++responses_by_status_[status];
}

}  // namespace loom::server
