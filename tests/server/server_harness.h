// A real server on an ephemeral loopback port, over the tiny real-vocabulary Qwen3-MoE checkpoint
// with the Qwen3 tokenizer. When a test ends, the engine must drain and every KV page must be
// free or held by the prefix cache (the leak check).
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "http_client.h"
#include "loom/engine/engine.h"
#include "loom/server/http_server.h"
#include "tokenizer/tokenizer_fixture.h"

namespace loom::server::testing {

inline std::string tiny_model_dir() { return std::string(LOOM_TEST_DATA) + "/models/tiny-qwen3-moe-realvocab"; }
inline constexpr const char* kModelName = "tiny-moe";

struct HarnessOptions {
  int64_t max_total_tokens = 16384;
  int64_t page_size = 16;
  int64_t max_running_requests = 64;
  int64_t chunked_prefill_size = 512;
  bool disable_radix_cache = false;
  int64_t max_queue = 1024;
  std::string api_key;
  size_t max_request_bytes = 1 << 20;
  int tp = 1;  // > 1: a parallel runner of that many CPU ranks
  std::string dist_backend = "auto";  // its CPU communicators: auto (Gloo) or host-copy
  std::string tool_call_parser, reasoning_parser;
  std::function<void(runtime::Runner&)> before_serving;  // e.g. to inject a rank failure
  std::function<void(ServerOptions&)> configure_server;  // e.g. short timeouts, one I/O thread
  std::string model_dir = tiny_model_dir();
  Device device = Device::cpu();
};

inline std::unique_ptr<runtime::Runner> tiny_runner(int64_t max_total_tokens, int64_t page_size, int tp = 1,
                                                    const std::string& model_dir = tiny_model_dir(),
                                                    Device device = Device::cpu(),
                                                    const std::string& dist_backend = "auto") {
  runtime::RunnerOptions ro;
  ro.model_path = model_dir;
  ro.max_total_tokens = max_total_tokens;
  ro.page_size = page_size;
  ro.parallel.tp = tp;
  ro.dist_backend = dist_backend;
  ro.device = device;
  if (device.is_cuda()) ro.mem_fraction_static = 0.3;
  return runtime::create_runner(ro);
}

class ServerHarness {
 public:
  explicit ServerHarness(HarnessOptions o = {}) {
    engine::EngineOptions eo;
    eo.scheduler.max_running_requests = o.max_running_requests;
    eo.scheduler.chunked_prefill_size = o.chunked_prefill_size;
    eo.scheduler.disable_radix_cache = o.disable_radix_cache;
    eo.max_queue = o.max_queue;
    auto runner = tiny_runner(o.max_total_tokens, o.page_size, o.tp, o.model_dir, o.device, o.dist_backend);
    if (o.before_serving) o.before_serving(*runner);
    engine_ = std::make_unique<engine::Engine>(std::move(runner), tokenizer::testing::qwen3(), eo);
    ServerOptions so;
    so.port = 0;
    so.served_model_name = kModelName;
    so.api_key = o.api_key;
    so.max_request_bytes = o.max_request_bytes;
    so.shutdown_grace = std::chrono::milliseconds(2000);
    so.tool_call_parser = o.tool_call_parser;
    so.reasoning_parser = o.reasoning_parser;
    if (o.configure_server) o.configure_server(so);
    http_ = std::make_unique<HttpServer>(*engine_, so);
    port_ = http_->bind();
    thread_ = std::thread([this] { http_->serve(); });
  }

  ~ServerHarness() {
    EXPECT_TRUE(engine_->wait_idle(std::chrono::seconds(60))) << "requests still in flight at the end of the test";
    EXPECT_EQ(engine_->idle_leak_report(), "") << "KV pages leaked";
    http_->stop();
    thread_.join();
  }

  int port() const { return port_; }
  engine::Engine& engine() { return *engine_; }

 private:
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;
  std::thread thread_;
};

// What a streamed (SSE) answer carried.
struct Streamed {
  int status = 0;
  std::string text;
  std::string finish_reason;
  nlohmann::json usage;
  bool done = false;  // ended with data: [DONE]
  int chunks = 0;
  std::string body;
};

inline Streamed stream(int port, const std::string& path, nlohmann::json body) {
  body["stream"] = true;
  HttpResponse r = post(port, path, body);
  Streamed s;
  s.status = r.status;
  s.body = r.body;
  for (const auto& data : sse_data(r.body)) {
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    auto j = nlohmann::json::parse(data);
    ++s.chunks;
    if (j.contains("usage") && !j["usage"].is_null()) s.usage = j["usage"];
    if (!j.contains("choices") || j["choices"].empty()) continue;
    const auto& c = j["choices"][0];
    if (c.contains("delta")) {
      if (c["delta"].contains("content")) s.text += c["delta"]["content"].get<std::string>();
    } else {
      s.text += c["text"].get<std::string>();
    }
    if (!c["finish_reason"].is_null()) s.finish_reason = c["finish_reason"].get<std::string>();
  }
  return s;
}

// The text of a non-streamed completion or chat answer.
inline std::string answer_text(const nlohmann::json& j) {
  const auto& c = j.at("choices").at(0);
  return c.contains("message") ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>();
}

}  // namespace loom::server::testing
