// The server's HTTP framing and routing without sockets (server/http_framing, server/request_router):
// pipelined requests, the limits' refusals (413, 414, 431), malformed input (400), a stream cut
// short (nothing), and the router's 401/404/400 before any engine is involved.
#include <gtest/gtest.h>

#include <vector>

#include "loom/server/http_framing.h"
#include "tokenizer/tokenizer_fixture.h"

namespace loom::server::testing {
namespace {

struct Framed {
  std::vector<std::string> targets;  // of the requests parsed
  int refusal = 0;                   // the status that ended the stream, 0 if none
  std::string message;
};

Framed frame(std::string_view bytes, HttpLimits limits = {}) {
  Framed f;
  parse_request_stream(
      bytes, limits, [&](RequestParser& p) { f.targets.emplace_back(p.get().target()); },
      [&](const ApiError& e) {
        f.refusal = e.status();
        f.message = e.what();
      });
  return f;
}

TEST(HttpFraming, PipelinedRequestsAreParsedInOrderUntilConnectionClose) {
  const auto f = frame(
      "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
      "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
      "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"
      "GET /never HTTP/1.1\r\n\r\n");
  EXPECT_EQ(f.targets, (std::vector<std::string>{"/health", "/v1/completions", "/v1/completions", "/metrics"}));
  EXPECT_EQ(f.refusal, 0);
}

TEST(HttpFraming, LimitsAreRefusedWithTheirStatus) {
  HttpLimits tight;
  tight.max_body_bytes = 10;
  tight.max_target_bytes = 20;
  tight.max_header_bytes = 200;
  auto f = frame("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", tight);  // refused before the body comes
  EXPECT_EQ(f.refusal, 413);
  EXPECT_NE(f.message.find("limit of 10 bytes"), std::string::npos) << f.message;
  EXPECT_EQ(frame("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n0123456789a\r\n0\r\n\r\n", tight).refusal, 413);
  EXPECT_EQ(frame("GET /" + std::string(30, 'a') + " HTTP/1.1\r\n\r\n", tight).refusal, 414);
  EXPECT_EQ(frame("GET / HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n", tight).refusal, 431);
}

TEST(HttpFraming, MalformedIs400AndACutStreamIsNothing) {
  EXPECT_EQ(frame("GET / HTTP/9.9\r\n\r\n").refusal, 400);
  EXPECT_EQ(frame("\x01\x02 nonsense\r\n\r\n").refusal, 400);
  EXPECT_EQ(frame("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").refusal, 400);
  const auto cut = frame("POST /v1/completions HTTP/1.1\r\nContent-Le");
  EXPECT_TRUE(cut.targets.empty());
  EXPECT_EQ(cut.refusal, 0);  // a slow client, not a bad one: the session's deadline answers it
}

TEST(RequestRouter, KeyRoutesAndMethodsBeforeTheEngine) {
  ProtocolContext protocol;
  protocol.tokenizer = &tokenizer::testing::qwen3();
  protocol.limits.vocab_size = 151936;
  protocol.limits.context_length = 4096;
  protocol.limits.kv_capacity = 4096;
  protocol.served_model_name = "m";
  RouterConfig config{"secret", &protocol};
  const std::string body = R"({"prompt": "hi", "max_tokens": 2})";
  const auto status_of = [&](std::string_view method, std::string_view target, std::string_view auth) {
    try {
      route_request({method, target, auth, &body}, config);
      return 200;
    } catch (const ApiError& e) {
      return e.status();
    }
  };
  EXPECT_EQ(status_of("GET", "/health", ""), 200);  // the one route without the key
  EXPECT_EQ(status_of("GET", "/v1/models", ""), 401);
  EXPECT_EQ(status_of("GET", "/v1/models", "Bearer secreT"), 401);
  EXPECT_EQ(status_of("GET", "/v1/models?x=1", "Bearer secret"), 200);
  EXPECT_EQ(status_of("HEAD", "/metrics", "Bearer secret"), 200);
  EXPECT_EQ(status_of("GET", "/v1/completions", "Bearer secret"), 404);  // as cpp-httplib answered
  EXPECT_EQ(status_of("BREW", "/health", ""), 400);
  const auto routed = route_request({"POST", "/v1/completions", "Bearer secret", &body}, config);
  EXPECT_EQ(routed.route, Route::completions);
  ASSERT_TRUE(routed.generate);
  EXPECT_EQ(routed.generate->request.params.max_tokens, 2);
}

}  // namespace
}  // namespace loom::server::testing
