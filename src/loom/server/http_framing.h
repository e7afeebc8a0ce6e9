// HTTP/1.1 request framing on Beast's parser, with the server's limits: the one place that decides
// how many header and body bytes a client may send and what a malformed, oversized or late
// request is answered with. The session reads sockets through it; parse_request_stream runs it
// over bytes in memory (the HTTP fuzz harness), so both exercise the same parser and checks.
#pragma once
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <functional>
#include <optional>
#include <string_view>

#include "loom/server/api_error.h"
#include "loom/server/request_router.h"

namespace loom::server {

struct HttpLimits {
  size_t max_header_bytes = 64 << 10;  // request line and every header field together (431 beyond)
  size_t max_target_bytes = 8192;      // the request target (414 beyond), as cpp-httplib allowed
  size_t max_body_bytes = 4 << 20;     // --max-request-bytes (413 beyond)
};

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

void apply_limits(RequestParser& parser, const HttpLimits& limits);

// The router's view of a parsed request (it points into `req`).
HttpRequestView request_view(const RequestParser::value_type& req);

// Once the header is in: the refusal that needs no body (414 for a long target, 413 for a
// Content-Length over the limit), or nothing to read the body on.
std::optional<ApiError> check_header(const RequestParser& parser, const HttpLimits& limits);

// The answer to a failed read: 400 malformed, 408 too slow, 413 body or 431 header too large;
// nothing when the client just went away (end of stream, reset).
std::optional<ApiError> read_error(const boost::system::error_code& ec, const HttpLimits& limits);

// Parses a stream of pipelined requests from memory, as a connection would: `on_request` gets
// each complete request; `on_error` the refusal that ends the stream. Stops after a request that
// does not keep the connection alive, and at an incomplete one (a client that stopped sending).
void parse_request_stream(std::string_view bytes, const HttpLimits& limits,
                          const std::function<void(RequestParser&)>& on_request,
                          const std::function<void(const ApiError&)>& on_error);

}  // namespace loom::server
