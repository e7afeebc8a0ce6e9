// /metrics as the soak (scripts/soak.py) reads it: the KV page gauges that tell a leak at idle
// (free + cached = total, and no cached page still locked) from pages in use; and the idle
// engine giving the heap's free pages back (engine/heap.h), which keeps the soak's RSS flat.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "loom/server/metrics_text.h"
#include "server_harness.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;

// The value of `name{model_name="..."}` in a /metrics text, -1 when absent.
int64_t gauge_in(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + "{");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(text.find("} ", at) + 2));
}

TEST(ServerMetrics, RendersEveryKvPageGauge) {
  engine::EngineStats s;
  s.kv_pages_total = 100;
  s.kv_pages_free = 60;
  s.kv_pages_cached = 30;
  s.kv_pages_locked = 7;
  const std::string text = render_metrics(s, "m", {});
  EXPECT_EQ(gauge_in(text, "loom_kv_pages_total"), 100);
  EXPECT_EQ(gauge_in(text, "loom_kv_pages_free"), 60);
  EXPECT_EQ(gauge_in(text, "loom_kv_pages_cached"), 30);
  EXPECT_EQ(gauge_in(text, "loom_kv_pages_locked"), 7);
  EXPECT_NE(text.find("# TYPE loom_kv_pages_locked gauge\n"), std::string::npos);
}

// A running request locks the cached pages of its prompt; once it is gone they are unlocked and
// every page is free or cached.
TEST(ServerMetrics, LockedPagesWhileARequestRunsNoneAtIdle) {
  ServerHarness h;
  HttpConnection c(h.port());
  std::string prompt;
  for (int i = 0; i < 20; ++i) prompt += "word" + std::to_string(i) + " ";  // a few full pages
  c.send_request("POST", "/v1/completions",
                 json{{"prompt", prompt}, {"max_tokens", 4000}, {"ignore_eos", true}, {"stream", true}}.dump());
  c.read_response([](const std::string& body) { return sse_data(body).size() < 2; });
  const std::string running = http(h.port(), "GET", "/metrics").body;
  EXPECT_EQ(gauge_in(running, "loom_num_requests_running"), 1);
  EXPECT_GT(gauge_in(running, "loom_kv_pages_locked"), 0) << running;
  c.close();
  ASSERT_TRUE(h.engine().wait_idle(std::chrono::seconds(30)));
  const std::string idle = http(h.port(), "GET", "/metrics").body;
  EXPECT_EQ(gauge_in(idle, "loom_kv_pages_locked"), 0);
  EXPECT_GT(gauge_in(idle, "loom_kv_pages_cached"), 0);
  EXPECT_EQ(gauge_in(idle, "loom_kv_pages_free") + gauge_in(idle, "loom_kv_pages_cached"),
            gauge_in(idle, "loom_kv_pages_total"));
}

// Released once per idle spell that follows work: never before any work, and not again while the
// engine stays idle.
TEST(ServerMetrics, IdleEngineReleasesTheHeapOnceAfterWork) {
  using namespace std::chrono_literals;
  engine::EngineOptions eo;
  eo.release_heap_after_idle = 50ms;
  engine::Engine e(tiny_runner(4096, 16), tokenizer::testing::qwen3(), eo);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(e.stats().heap_releases, 0u) << "released with nothing run";

  const auto run_one = [&] {
    std::atomic<bool> finished{false};
    engine::Request r;
    r.prompt = {1, 2, 3, 4, 5};
    r.params.max_tokens = 4;
    r.on_output = [&finished](const engine::RequestOutput& o) {
      if (o.finished) finished = true;
    };
    e.submit(std::move(r));
    ASSERT_TRUE(e.wait_idle(std::chrono::seconds(30)));
    EXPECT_TRUE(finished.load());
  };
  const auto releases_reach = [&](uint64_t n) {
    for (int i = 0; i < 1000 && e.stats().heap_releases < n; ++i) std::this_thread::sleep_for(10ms);
    return e.stats().heap_releases;
  };
  run_one();
  EXPECT_EQ(releases_reach(1), 1u);
  std::this_thread::sleep_for(300ms);  // six times the linger, still idle
  EXPECT_EQ(e.stats().heap_releases, 1u) << "released again without work in between";
  run_one();
  EXPECT_EQ(releases_reach(2), 2u);
  EXPECT_NE(render_metrics(e.stats(), "m", {}).find("loom_heap_releases_total{model_name=\"m\"} 2\n"),
            std::string::npos);
}

}  // namespace
}  // namespace loom::server::testing
