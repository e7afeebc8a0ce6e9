// Many clients at once over real HTTP: continuous batching, chunked prefill, prefix reuse and
// retraction on a small KV pool must not change greedy outputs; clients that vanish mid-stream
// must not leak pages or leave requests stuck.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "server_harness.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;

struct Answer {
  std::string text;
  int64_t completion_tokens = -1;
  int64_t cached_tokens = 0;
  bool operator==(const Answer& o) const { return text == o.text && completion_tokens == o.completion_tokens; }
};

std::ostream& operator<<(std::ostream& os, const Answer& a) {
  return os << "{" << a.completion_tokens << " tokens: '" << a.text << "'}";
}

Answer ask(int port, const std::string& path, const json& body, bool streamed) {
  Answer a;
  if (streamed) {
    json b = body;
    b["stream_options"] = {{"include_usage", true}};
    Streamed s = stream(port, path, b);
    EXPECT_EQ(s.status, 200) << s.body;
    EXPECT_TRUE(s.done);
    a.text = s.text;
    if (!s.usage.is_null()) {
      a.completion_tokens = s.usage["completion_tokens"];
      a.cached_tokens = s.usage["prompt_tokens_details"]["cached_tokens"];
    }
  } else {
    auto r = post(port, path, body);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return a;
    auto j = r.json();
    a.text = answer_text(j);
    a.completion_tokens = j["usage"]["completion_tokens"];
    a.cached_tokens = j["usage"]["prompt_tokens_details"]["cached_tokens"];
  }
  return a;
}

// Runs every body at once (one client thread each), alternating streamed and not.
std::vector<Answer> ask_all_at_once(int port, const std::string& path, const std::vector<json>& bodies) {
  std::vector<Answer> out(bodies.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < bodies.size(); ++i)
    clients.emplace_back([&, i] { out[i] = ask(port, path, bodies[i], i % 2 == 0); });
  for (auto& t : clients) t.join();
  return out;
}

std::vector<Answer> ask_one_at_a_time(int port, const std::string& path, const std::vector<json>& bodies) {
  std::vector<Answer> out;
  for (const auto& b : bodies) out.push_back(ask(port, path, b, false));
  return out;
}

std::vector<json> completion_bodies(int n, int base_tokens) {
  std::vector<json> bodies;
  for (int i = 0; i < n; ++i) {
    std::string prompt = "Request " + std::to_string(i) + ":";
    for (int k = 0; k < i % 5; ++k) prompt += " and some more words to vary the length";
    bodies.push_back({{"prompt", prompt}, {"max_tokens", base_tokens + i % 7}, {"temperature", 0}, {"ignore_eos", true}});
  }
  return bodies;
}

uint64_t counter(int port, const std::string& name) {
  const std::string body = http(port, "GET", "/metrics").body;
  const size_t at = body.find("\n" + name + "{");
  if (at == std::string::npos) return 0;
  return std::stoull(body.substr(body.find("} ", at) + 2));
}

TEST(ServerConcurrency, ThirtyTwoConcurrentRequestsMatchOneAtATime) {
  const auto bodies = completion_bodies(32, 10);
  std::vector<Answer> expected;
  {
    HarnessOptions o;
    o.disable_radix_cache = true;
    ServerHarness solo(o);
    expected = ask_one_at_a_time(solo.port(), "/v1/completions", bodies);
  }
  HarnessOptions o;
  o.max_running_requests = 12;  // the rest queue and join as others finish
  o.chunked_prefill_size = 24;  // longer prompts are prefilled in several chunks
  ServerHarness h(o);
  const auto got = ask_all_at_once(h.port(), "/v1/completions", bodies);
  for (size_t i = 0; i < bodies.size(); ++i) EXPECT_EQ(got[i], expected[i]) << "request " << i;
}

TEST(ServerConcurrency, SharedPrefixIsServedFromThePrefixCache) {
  std::string system = "You are a helpful assistant for a library. ";
  for (int i = 0; i < 12; ++i) system += "Rule " + std::to_string(i) + ": answer briefly and cite the shelf. ";
  std::vector<json> bodies;
  for (int i = 0; i < 8; ++i)
    bodies.push_back({{"messages", {{{"role", "system"}, {"content", system}},
                                    {{"role", "user"}, {"content", "Where is book " + std::to_string(i) + "?"}}}},
                      {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}});

  std::vector<Answer> expected;
  {
    HarnessOptions o;
    o.disable_radix_cache = true;
    ServerHarness no_cache(o);
    expected = ask_one_at_a_time(no_cache.port(), "/v1/chat/completions", bodies);
    EXPECT_EQ(counter(no_cache.port(), "loom_prefix_cache_hit_tokens_total"), 0u);
  }
  ServerHarness h;
  const Answer warm = ask(h.port(), "/v1/chat/completions", bodies[0], false);  // fills the cache
  EXPECT_EQ(warm, expected[0]);
  const std::vector<json> rest(bodies.begin() + 1, bodies.end());
  const auto got = ask_all_at_once(h.port(), "/v1/chat/completions", rest);
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(got[i], expected[i + 1]) << "request " << i + 1;
    EXPECT_GE(got[i].cached_tokens, 16 * 5) << "request " << i + 1 << " recomputed the shared prefix";
  }
  EXPECT_GE(counter(h.port(), "loom_prefix_cache_hit_tokens_total"), 7u * 16 * 5);
}

TEST(ServerConcurrency, SmallKvPoolQueuesAndRetractsWithoutChangingGreedyOutput) {
  const auto bodies = completion_bodies(12, 50);
  std::vector<Answer> expected;
  {
    ServerHarness solo;
    expected = ask_one_at_a_time(solo.port(), "/v1/completions", bodies);
  }
  HarnessOptions o;
  o.max_total_tokens = 320;  // 20 pages of 16: a few requests' worth
  o.max_running_requests = 16;
  o.chunked_prefill_size = 32;
  ServerHarness h(o);
  const auto got = ask_all_at_once(h.port(), "/v1/completions", bodies);
  for (size_t i = 0; i < bodies.size(); ++i) EXPECT_EQ(got[i], expected[i]) << "request " << i;
  std::printf("retractions: %llu\n", static_cast<unsigned long long>(counter(h.port(), "loom_retractions_total")));
}

TEST(ServerConcurrency, ClientThatDisconnectsMidStreamIsAbortedAndItsPagesFreed) {
  ServerHarness h;
  HttpConnection c(h.port());
  c.send_request("POST", "/v1/completions",
                 json{{"prompt", "a very long answer please"}, {"max_tokens", 4000}, {"ignore_eos", true}, {"stream", true}}.dump());
  int events = 0;
  c.read_response([&](const std::string& body) { return (events = static_cast<int>(sse_data(body).size())) < 2; });
  ASSERT_GE(events, 2);
  c.close();
  ASSERT_TRUE(h.engine().wait_idle(std::chrono::seconds(30)));
  const auto stats = h.engine().stats();
  EXPECT_EQ(stats.requests_finished_abort, 1u);
  EXPECT_LT(stats.generation_tokens, 3990u) << "the request ran to the end instead of being aborted";
  EXPECT_EQ(stats.kv_pages_free + stats.kv_pages_cached, stats.kv_pages_total);
}

// Not streaming: nothing is written until the end, so the server watches the socket itself.
TEST(ServerConcurrency, NonStreamingClientThatDisconnectsIsAbortedAndItsPagesFreed) {
  ServerHarness h;
  HttpConnection c(h.port());
  c.send_request("POST", "/v1/completions",
                 json{{"prompt", "a very long answer please"}, {"max_tokens", 4000}, {"ignore_eos", true}}.dump());
  // Wait until the request is decoding, then leave.
  for (int i = 0; i < 300 && h.engine().stats().generation_tokens < 5; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(h.engine().stats().generation_tokens, 5u);
  c.close();
  ASSERT_TRUE(h.engine().wait_idle(std::chrono::seconds(30)));
  const auto stats = h.engine().stats();
  EXPECT_EQ(stats.requests_finished_abort, 1u);
  EXPECT_LT(stats.generation_tokens, 3990u) << "the request ran to the end instead of being aborted";
  EXPECT_EQ(stats.kv_pages_free + stats.kv_pages_cached, stats.kv_pages_total);
  // The server still answers.
  EXPECT_EQ(post(h.port(), "/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 2}}).status, 200);
}

// With n choices, the client leaving aborts every choice.
TEST(ServerConcurrency, ClientThatDisconnectsAbortsEveryChoice) {
  ServerHarness h;
  HttpConnection c(h.port());
  c.send_request("POST", "/v1/completions",
                 json{{"prompt", "a very long answer please"}, {"max_tokens", 4000}, {"ignore_eos", true}, {"stream", true},
                      {"n", 3}}
                     .dump());
  int events = 0;
  c.read_response([&](const std::string& body) { return (events = static_cast<int>(sse_data(body).size())) < 4; });
  ASSERT_GE(events, 4);
  c.close();
  ASSERT_TRUE(h.engine().wait_idle(std::chrono::seconds(30)));
  const auto stats = h.engine().stats();
  EXPECT_EQ(stats.requests_finished_abort, 3u);
  EXPECT_LT(stats.generation_tokens, 3 * 3990u) << "the choices ran to the end instead of being aborted";
  EXPECT_EQ(stats.kv_pages_free + stats.kv_pages_cached, stats.kv_pages_total);
}

TEST(ServerConcurrency, AbortStormLeavesNoLeakNoStuckRequestAndAServingServer) {
  HarnessOptions o;
  o.max_running_requests = 3;
  o.max_total_tokens = 256;
  o.chunked_prefill_size = 32;
  ServerHarness h(o);
  const json probe = {{"prompt", "still alive?"}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}};
  const Answer before = ask(h.port(), "/v1/completions", probe, false);

  constexpr int kRequests = 240, kClients = 24;
  std::atomic<int> next{0}, completed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&] {
      for (int i = next++; i < kRequests; i = next++) {
        const json body = {{"prompt", "storm " + std::to_string(i) + " with a few extra words"},
                           {"max_tokens", 20 + i % 40}, {"ignore_eos", true}, {"temperature", 0.7}, {"seed", i}};
        HttpConnection c(h.port());
        switch (i % 4) {
          case 0: {  // killed after a few events
            json b = body;
            b["stream"] = true;
            c.send_request("POST", "/v1/completions", b.dump());
            const size_t keep = 1 + i % 3;
            c.read_response([&](const std::string& s) { return sse_data(s).size() < keep; });
            break;
          }
          case 1: {  // killed before any answer
            json b = body;
            b["stream"] = true;
            c.send_request("POST", "/v1/completions", b.dump());
            break;
          }
          case 2: {  // waits for the whole answer
            c.send_request("POST", "/v1/completions", body.dump());
            if (c.read_response().status == 200) ++completed;
            break;
          }
          default: {  // reads the whole stream
            json b = body;
            b["stream"] = true;
            c.send_request("POST", "/v1/completions", b.dump());
            auto r = c.read_response();
            if (r.status == 200 && r.body.find("data: [DONE]") != std::string::npos) ++completed;
          }
        }
        c.close();
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(completed.load(), kRequests / 2);
  ASSERT_TRUE(h.engine().wait_idle(std::chrono::seconds(60))) << "requests stuck after the storm";
  EXPECT_EQ(h.engine().idle_leak_report(), "");
  const auto stats = h.engine().stats();
  EXPECT_GT(stats.requests_finished_abort, 0u);
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.waiting, 0);
  EXPECT_EQ(http(h.port(), "GET", "/health").status, 200);
  EXPECT_EQ(ask(h.port(), "/v1/completions", probe, false), before);
}

}  // namespace
}  // namespace loom::server::testing
