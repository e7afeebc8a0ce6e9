// What an HTTP request asks for, decided without sockets or an engine: the API key check, the
// route, and for the generating routes the OpenAI body parsed into an engine request. The server
// and the HTTP fuzz harness run the same code; every refusal is an ApiError (401, 404, 400 ...).
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "loom/server/api_error.h"
#include "loom/server/openai_protocol.h"

namespace loom::server {

enum class Route { health, models, metrics, openapi, completions, chat };

// The parts of a request the router reads (the session copies them out of Beast's message).
struct HttpRequestView {
  std::string_view method;  // as sent: "GET", "POST", ...
  std::string_view target;  // path and query
  std::string_view authorization;
  const std::string* body = nullptr;
};

struct RouterConfig {
  std::string api_key;                       // non-empty: every route but /health needs it
  const ProtocolContext* protocol = nullptr;  // parses the generating routes' bodies
};

struct RoutedRequest {
  Route route = Route::health;
  std::optional<ParsedRequest> generate;  // completions and chat: the parsed body
};

// Throws ApiError for a missing/wrong key (401), an unknown method (400), no route (404) or a bad
// body (400/404 from parse_request).
RoutedRequest route_request(const HttpRequestView& req, const RouterConfig& config);

// The request target without its query string ("/v1/models?x=1" -> "/v1/models").
std::string_view target_path(std::string_view target);

// Equal strings, in a time that depends on their lengths only (no early exit at the first
// difference a client could time to guess the key byte by byte).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace loom::server
