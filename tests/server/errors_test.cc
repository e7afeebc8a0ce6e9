// Bad input gets an OpenAI-shaped error body with the right status, and the server keeps serving.
#include <gtest/gtest.h>

#include <regex>

#include "loom/runtime/parallel_runner.h"
#include "server_harness.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;

// {"error": {"message", "type", "param", "code"}} with `status`; `param` "" means null.
void expect_error(const HttpResponse& r, int status, const std::string& param, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.status, status) << r.body;
  json j;
  ASSERT_NO_THROW(j = r.json()) << r.body;
  ASSERT_TRUE(j.contains("error")) << r.body;
  const auto& e = j["error"];
  ASSERT_TRUE(e.contains("message") && e.contains("type") && e.contains("param") && e.contains("code")) << r.body;
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
  EXPECT_TRUE(e["type"].is_string());
  if (param.empty()) {
    EXPECT_TRUE(e["param"].is_null()) << r.body;
  } else {
    EXPECT_EQ(e["param"], param) << r.body;
  }
}

void expect_still_serving(int port) {
  EXPECT_EQ(http(port, "GET", "/health").status, 200);
  EXPECT_EQ(post(port, "/v1/completions", {{"prompt", "ok"}, {"max_tokens", 2}}).status, 200);
}

TEST(ServerErrors, MalformedJsonAndNonObjectBodies) {
  ServerHarness h;
  // The last: bytes that are not UTF-8, which the parse error quotes back (found by schemathesis).
  for (const char* body : {"{not json", "", "[1, 2]", "42", "\"prompt\"", "null", "\xe8@\x17\x8d"}) {
    expect_error(http(h.port(), "POST", "/v1/completions", body), 400, "", body);
    expect_error(http(h.port(), "POST", "/v1/chat/completions", body), 400, "", body);
  }
  expect_still_serving(h.port());
}

TEST(ServerErrors, WrongTypesNameTheField) {
  ServerHarness h;
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"prompt", "hi"}, {"temperature", "hot"}}, "temperature"},
      {{{"prompt", "hi"}, {"max_tokens", 1.5}}, "max_tokens"},
      {{{"prompt", "hi"}, {"max_tokens", "8"}}, "max_tokens"},
      {{{"prompt", json::object()}}, "prompt"},
      {{{"prompt", {1, "two"}}}, "prompt"},
      {{{"prompt", "hi"}, {"stream", "yes"}}, "stream"},
      {{{"prompt", "hi"}, {"stop", 5}}, "stop"},
      {{{"prompt", "hi"}, {"seed", "x"}}, "seed"},
      {{{"prompt", "hi"}, {"model", 3}}, "model"},
      {{{"prompt", "hi"}, {"logprobs", true}}, "logprobs"},
  };
  for (const auto& [body, param] : cases) expect_error(post(h.port(), "/v1/completions", body), 400, param, body.dump());
  expect_error(post(h.port(), "/v1/chat/completions", {{"messages", "hi"}}), 400, "messages", "messages string");
  expect_error(post(h.port(), "/v1/chat/completions", {{"messages", {1, 2}}}), 400, "messages", "messages ints");
  expect_error(post(h.port(), "/v1/chat/completions", {{"messages", {{{"content", "no role"}}}}}), 400, "messages",
               "no role");
  expect_still_serving(h.port());
}

// Limits a hostile body cannot exceed: nesting depth, message count, stop strings.
TEST(ServerErrors, HostileSizesAre400) {
  ServerHarness h;
  const std::string deep = "{\"prompt\": \"hi\", \"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  const auto r = http(h.port(), "POST", "/v1/completions", deep);
  expect_error(r, 400, "", "100000 nested arrays");
  EXPECT_NE(r.body.find("deeper than 64 levels"), std::string::npos) << r.body.substr(0, 300);
  const std::string ok_depth = "{\"prompt\": \"hi\", \"max_tokens\": 1, \"x\": " + std::string(60, '[') +
                               std::string(60, ']') + "}";
  EXPECT_EQ(http(h.port(), "POST", "/v1/completions", ok_depth).status, 200);  // unknown fields are ignored

  json many = json::array();
  for (int i = 0; i < 4097; ++i) many.push_back({{"role", "user"}, {"content", "x"}});
  expect_error(post(h.port(), "/v1/chat/completions", {{"messages", many}}), 400, "messages", "4097 messages");
  json stops = json::array();
  for (int i = 0; i < 17; ++i) stops.push_back("s" + std::to_string(i));
  expect_error(post(h.port(), "/v1/completions", {{"prompt", "hi"}, {"stop", stops}}), 400, "stop", "17 stops");
  expect_error(post(h.port(), "/v1/completions", {{"prompt", "hi"}, {"stop", std::string(257, 'a')}}), 400, "stop",
               "a 257-byte stop string");
  expect_still_serving(h.port());
}

TEST(ServerErrors, UnknownModelIs404) {
  ServerHarness h;
  auto r = post(h.port(), "/v1/completions", {{"model", "gpt-4"}, {"prompt", "hi"}});
  expect_error(r, 404, "model", "unknown model");
  EXPECT_EQ(r.json()["error"]["code"], "model_not_found");
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("gpt-4"), std::string::npos);
}

TEST(ServerErrors, EmptyPromptsAndMessages) {
  ServerHarness h;
  expect_error(post(h.port(), "/v1/completions", {{"prompt", ""}}), 400, "prompt", "empty string");
  expect_error(post(h.port(), "/v1/completions", {{"prompt", json::array()}}), 400, "prompt", "empty array");
  expect_error(post(h.port(), "/v1/completions", {{"max_tokens", 3}}), 400, "prompt", "missing prompt");
  expect_error(post(h.port(), "/v1/chat/completions", {{"messages", json::array()}}), 400, "messages", "no messages");
  expect_still_serving(h.port());
}

TEST(ServerErrors, PromptPlusMaxTokensBeyondContextNamesBothNumbers) {
  ServerHarness h;
  const std::vector<int32_t> prompt(100, 785);
  auto r = post(h.port(), "/v1/completions", {{"prompt", prompt}, {"max_tokens", 4000}});
  expect_error(r, 400, "max_tokens", "context");
  const std::string msg = r.json()["error"]["message"];
  for (const char* number : {"100", "4000", "4096"})
    EXPECT_TRUE(std::regex_search(msg, std::regex(std::string("\\b") + number + "\\b"))) << number << " in " << msg;
  expect_still_serving(h.port());
}

TEST(ServerErrors, OutOfRangeSamplingValues) {
  ServerHarness h;
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"temperature", 2.5}}, "temperature"},       {{{"temperature", -0.1}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},                     {{{"top_p", 1.5}}, "top_p"},
      {{{"min_p", -0.1}}, "min_p"},                  {{{"top_k", -5}}, "top_k"},
      {{{"top_k", 10000000}}, "top_k"},              {{{"frequency_penalty", 2.5}}, "frequency_penalty"},
      {{{"presence_penalty", -3}}, "presence_penalty"}, {{{"repetition_penalty", 0}}, "repetition_penalty"},
      {{{"max_tokens", 0}}, "max_tokens"},           {{{"max_tokens", -4}}, "max_tokens"},
      {{{"logprobs", 21}}, "logprobs"},              {{{"n", 17}}, "n"},
      {{{"n", 0}}, "n"},                             {{{"n", 3}, {"best_of", 2}}, "best_of"},
      {{{"best_of", 17}}, "best_of"},                {{{"best_of", 3}, {"stream", true}}, "best_of"},
  };
  for (const auto& [extra, param] : cases) {
    json body = {{"prompt", "hi"}};
    body.update(extra);
    expect_error(post(h.port(), "/v1/completions", body), 400, param, body.dump());
  }
  expect_error(post(h.port(), "/v1/chat/completions",
                    {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"logprobs", true}, {"top_logprobs", 30}}),
               400, "top_logprobs", "top_logprobs");
  expect_still_serving(h.port());
}

TEST(ServerErrors, TokenIdsOutsideTheVocabulary) {
  ServerHarness h;
  expect_error(post(h.port(), "/v1/completions", {{"prompt", {1, 151936}}}), 400, "prompt", "id = vocab");
  expect_error(post(h.port(), "/v1/completions", {{"prompt", {-1}}}), 400, "prompt", "negative id");
  expect_error(post(h.port(), "/v1/completions", {{"prompt", {int64_t{1} << 40}}}), 400, "prompt", "huge id");
  expect_error(post(h.port(), "/v1/completions", {{"prompt", "hi"}, {"stop_token_ids", {999999}}}), 400,
               "stop_token_ids", "stop id");
  expect_still_serving(h.port());
}

TEST(ServerErrors, BodyOverTheSizeLimitIs413) {
  HarnessOptions o;
  o.max_request_bytes = 4096;
  ServerHarness h(o);
  auto r = post(h.port(), "/v1/completions", {{"prompt", std::string(20000, 'a')}});
  expect_error(r, 413, "", "oversized body");
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("4096"), std::string::npos);
  expect_still_serving(h.port());
}

TEST(ServerErrors, UnknownRouteIs404) {
  ServerHarness h;
  expect_error(http(h.port(), "GET", "/v1/nothing"), 404, "", "unknown route");
}

// Scrapes one unlabelled-but-model gauge from /metrics.
int64_t gauge(int port, const std::string& name) {
  const std::string body = http(port, "GET", "/metrics").body;
  const size_t at = body.find("\n" + name + "{");
  if (at == std::string::npos) return -1;
  const size_t space = body.find("} ", at);
  return std::stoll(body.substr(space + 2));
}

TEST(ServerErrors, FullWaitingQueueIs503) {
  HarnessOptions o;
  o.max_running_requests = 1;
  o.max_queue = 1;
  ServerHarness h(o);
  const json long_stream = {{"prompt", "tell me a long story"}, {"max_tokens", 4000}, {"ignore_eos", true}, {"stream", true}};
  // A runs; B waits (the queue holds one); C finds the queue full.
  HttpConnection a(h.port()), b(h.port());
  a.send_request("POST", "/v1/completions", long_stream.dump());
  a.read_response([](const std::string& body) { return body.find("data: ") == std::string::npos; });
  b.send_request("POST", "/v1/completions", long_stream.dump());
  bool queued = false;
  for (int i = 0; i < 2000 && !queued; ++i) {
    queued = gauge(h.port(), "loom_num_requests_waiting") == 1;
    if (!queued) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(queued) << "B never reached the waiting queue";
  auto c = post(h.port(), "/v1/completions", {{"prompt", "hi"}, {"max_tokens", 2}});
  expect_error(c, 503, "", "queue full");
  EXPECT_EQ(c.json()["error"]["code"], "queue_full");
  // Both clients go away: their requests are aborted and their KV freed (checked at teardown).
  a.close();
  b.close();
  ASSERT_TRUE(h.engine().wait_idle(std::chrono::seconds(30)));
  expect_still_serving(h.port());
}

// A rank that fails mid-step: the request in that step fails at once (not after --dist-timeout),
// and since the ranks' communicators are gone the server says so on /health and refuses new work
// with 503 rather than hanging or answering from a broken runner.
void expect_rank_failure_reported(const std::string& dist_backend) {
  HarnessOptions o;
  o.tp = 2;
  o.dist_backend = dist_backend;
  o.before_serving = [](runtime::Runner& r) { runtime::inject_rank_failure(r, 1, "injected fault"); };
  ServerHarness h(o);
  EXPECT_EQ(http(h.port(), "GET", "/health").status, 200);
  auto failed = post(h.port(), "/v1/completions", {{"prompt", "hello"}, {"max_tokens", 4}});
  expect_error(failed, 500, "", "the failed step");
  EXPECT_NE(failed.json()["error"]["message"].get<std::string>().find("rank 1: injected fault"), std::string::npos)
      << failed.body;

  auto health = http(h.port(), "GET", "/health");
  expect_error(health, 503, "", "health after the failure");
  EXPECT_EQ(health.json()["error"]["code"], "runner_stopped");
  EXPECT_NE(health.json()["error"]["message"].get<std::string>().find("injected fault"), std::string::npos);

  auto refused = post(h.port(), "/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 2}, {"stream", true}});
  expect_error(refused, 503, "", "a request after the failure");
  EXPECT_EQ(refused.json()["error"]["code"], "runner_stopped");
}

TEST(ServerErrors, RankFailureFailsTheStepAndHealthSaysSo) { expect_rank_failure_reported("auto"); }
// The same over host-copy communicators: the ThreadSanitizer job runs this one (Gloo's own threads
// race when a rank aborts mid-collective: scripts/test_sanitizers.sh).
TEST(ServerErrors, RankFailureFailsTheStepAndHealthSaysSoOverHostCopy) { expect_rank_failure_reported("host-copy"); }

}  // namespace
}  // namespace loom::server::testing
