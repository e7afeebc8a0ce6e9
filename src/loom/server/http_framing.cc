#include "loom/server/http_framing.h"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

namespace loom::server {
namespace http = boost::beast::http;

namespace {
std::string_view view(boost::beast::string_view s) { return {s.data(), s.size()}; }  // Boost 1.74's own string_view

ApiError too_large(size_t max_bytes) {
  return ApiError(413, "invalid_request_error", str("the request body is larger than the limit of ", max_bytes, " bytes"),
                  "", "request_too_large");
}
}  // namespace

void apply_limits(RequestParser& parser, const HttpLimits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);
}

HttpRequestView request_view(const RequestParser::value_type& req) {
  return {view(req.method_string()), view(req.target()), view(req[http::field::authorization]), &req.body()};
}

std::optional<ApiError> check_header(const RequestParser& parser, const HttpLimits& limits) {
  if (parser.get().target().size() > limits.max_target_bytes)
    return ApiError(414, "invalid_request_error", "the request URI is too long");
  if (const auto length = parser.content_length(); length && *length > limits.max_body_bytes)
    return too_large(limits.max_body_bytes);
  return std::nullopt;
}

std::optional<ApiError> read_error(const boost::system::error_code& ec, const HttpLimits& limits) {
  if (ec == boost::beast::error::timeout)
    return ApiError(408, "invalid_request_error", "the request was not received in time", "", "request_timeout");
  if (ec == http::error::body_limit) return too_large(limits.max_body_bytes);
  if (ec == http::error::header_limit)
    return ApiError(431, "invalid_request_error",
                    str("the request header is larger than the limit of ", limits.max_header_bytes, " bytes"));
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;  // client left
  if (ec.category() == http::make_error_code(http::error::bad_method).category())
    return ApiError(400, "invalid_request_error", str("malformed HTTP request: ", ec.message()));
  return std::nullopt;  // a socket error: nobody to answer
}

void parse_request_stream(std::string_view bytes, const HttpLimits& limits,
                          const std::function<void(RequestParser&)>& on_request,
                          const std::function<void(const ApiError&)>& on_error) {
  while (!bytes.empty()) {
    RequestParser parser;
    apply_limits(parser, limits);
    parser.eager(true);
    bool header_checked = false;
    while (!parser.is_done()) {
      boost::system::error_code ec;
      const size_t used = bytes.empty() ? 0 : parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
      bytes.remove_prefix(used);
      if (ec == http::error::need_more && used == 0) return;  // the rest is an incomplete request
      if (ec && ec != http::error::need_more) {
        if (auto e = read_error(ec, limits)) on_error(*e);
        return;
      }
      if (parser.is_header_done() && !header_checked) {
        header_checked = true;
        if (auto e = check_header(parser, limits)) return on_error(*e);
      }
      if (bytes.empty() && !parser.is_done()) return;
    }
    on_request(parser);
    if (!parser.get().keep_alive()) return;
  }
}

}  // namespace loom::server
