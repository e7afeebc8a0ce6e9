#include "loom/server/request_router.h"

#include <algorithm>
#include <array>

namespace loom::server {
namespace {

// The methods HTTP/1.1 servers commonly accept; any other is a malformed request (400), as
// cpp-httplib answered before the move to Beast.
bool known_method(std::string_view m) {
  static constexpr std::array<std::string_view, 9> kMethods = {"GET",     "HEAD",  "POST",  "PUT", "DELETE",
                                                               "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  return std::find(kMethods.begin(), kMethods.end(), m) != kMethods.end();
}

std::optional<Route> find_route(std::string_view method, std::string_view path) {
  if (method == "GET" || method == "HEAD") {  // HEAD answers GET's headers
    if (path == "/health") return Route::health;
    if (path == "/v1/models") return Route::models;
    if (path == "/metrics") return Route::metrics;
    if (path == "/openapi.json") return Route::openapi;
  } else if (method == "POST") {
    if (path == "/v1/completions") return Route::completions;
    if (path == "/v1/chat/completions") return Route::chat;
  }
  return std::nullopt;
}

}  // namespace

std::string_view target_path(std::string_view target) { return target.substr(0, target.find('?')); }

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

RoutedRequest route_request(const HttpRequestView& req, const RouterConfig& config) {
  if (!known_method(req.method)) throw ApiError(400, "invalid_request_error", "HTTP error 400");
  const std::string_view path = target_path(req.target);
  if (!config.api_key.empty() && path != "/health" &&
      !constant_time_equal(req.authorization, "Bearer " + config.api_key))
    throw ApiError(401, "invalid_request_error", "a valid API key is required: send 'Authorization: Bearer <key>'", "",
                   "invalid_api_key");
  const auto route = find_route(req.method, path);
  if (!route) throw ApiError(404, "invalid_request_error", str("no route for ", req.method, " ", path), "", "not_found");
  RoutedRequest routed{*route, std::nullopt};
  if (*route == Route::completions || *route == Route::chat) {
    static const std::string kEmpty;
    try {
      routed.generate = parse_request(*route == Route::chat ? Endpoint::chat : Endpoint::completions,
                                      req.body ? *req.body : kEmpty, *config.protocol);
    } catch (const ApiError&) {
      throw;
    } catch (const InvalidArgument& e) {
      throw bad_request("", e.what());
    }
  }
  return routed;
}

}  // namespace loom::server
