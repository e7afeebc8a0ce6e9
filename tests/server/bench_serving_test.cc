// `loom bench serving` against the real `loom serve` on the CPU fixture: random token-id prompts
// over completions, text prompts over chat at a Poisson rate, a ShareGPT-style file, requests the
// server refuses (counted as failures, with the server's message), and bad flags.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/run_command.h"
#include "serve_process.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;
using loom::testing::count_lines;
using loom::testing::run_loom;

std::string data(const std::string& rel) { return std::string(LOOM_TEST_DATA) + "/" + rel; }

class BenchServing : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServeProcess>(std::vector<std::string>{
        "--model-path", data("models/tiny-qwen3-moe-realvocab"), "--tokenizer", data("tokenizers/qwen3"), "--port",
        "0", "--max-running-requests", "8"});
    port_ = server_->wait_port();
    ASSERT_GT(port_, 0) << server_->log();
    out_ = ::testing::TempDir() + "/bench_serving_" + std::to_string(::getpid()) + ".json";
  }

  // Runs the benchmark against the server; returns its exit code and fills `report`.
  int bench(const std::string& flags, json& report, std::string* err = nullptr) {
    std::remove(out_.c_str());
    const auto r = run_loom("bench serving --base-url http://127.0.0.1:" + std::to_string(port_) + " --output-file " +
                            out_ + " " + flags);
    if (err) *err = r.err;
    std::ifstream in(out_);
    report = in.good() ? json::parse(in) : json();
    if (r.exit_code == 0) EXPECT_NE(r.out.find("Successful requests:"), std::string::npos) << r.out;
    return r.exit_code;
  }

  std::unique_ptr<ServeProcess> server_;
  int port_ = -1;
  std::string out_;
};

TEST_F(BenchServing, RandomIdsOverCompletionsCountEveryToken) {
  json j;
  ASSERT_EQ(bench("--num-prompts 12 --random-input-len 24 --random-output-len 6 --random-range-ratio 1 "
                  "--max-concurrency 4 --seed 7",
                  j),
            0);
  EXPECT_EQ(j["completed"], 12);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_input_tokens"], 12 * 24);   // the server's usage: every id is one token
  EXPECT_EQ(j["total_output_tokens"], 12 * 6);   // ignore_eos: the full length every time
  EXPECT_EQ(j["model"], "tiny-qwen3-moe-realvocab");  // asked from /v1/models
  for (const char* m : {"ttft_ms", "itl_ms", "tpot_ms", "e2e_latency_ms"}) {
    EXPECT_GT(j[m]["p50"].get<double>(), 0) << m;
    EXPECT_LE(j[m]["p50"].get<double>(), j[m]["p99"].get<double>()) << m;
  }
  EXPECT_GE(j["e2e_latency_ms"]["mean"].get<double>(), j["ttft_ms"]["mean"].get<double>());
  EXPECT_NEAR(j["output_throughput"].get<double>(), 72 / j["duration_s"].get<double>(), 1e-6);
  ASSERT_EQ(j["requests"].size(), 12u);
  for (const auto& q : j["requests"]) {
    EXPECT_TRUE(q["ok"].get<bool>());
    EXPECT_EQ(q["output_tokens"], 6);
    EXPECT_LE(q["ttft_ms"].get<double>(), q["e2e_ms"].get<double>());
  }
}

TEST_F(BenchServing, ChatTextAtAPoissonRate) {
  json j;
  ASSERT_EQ(bench("--backend chat --tokenizer " + data("tokenizers/qwen3") +
                      " --num-prompts 8 --random-input-len 16 --random-output-len 5 --random-range-ratio 1 "
                      "--request-rate 40 --seed 3",
                  j),
            0);
  EXPECT_EQ(j["completed"], 8);
  EXPECT_EQ(j["total_output_tokens"], 40);
  EXPECT_EQ(j["request_rate"], 40.0);
  EXPECT_GT(j["total_input_tokens"].get<int64_t>(), 8 * 10);  // the chat template adds its own tokens
}

// --extra-request-body reaches every request: a regex constraint shapes (and ends) each answer.
TEST_F(BenchServing, ExtraRequestBodyReachesEveryRequest) {
  json j;
  ASSERT_EQ(bench("--num-prompts 4 --random-input-len 8 --random-output-len 30 --random-range-ratio 1 "
                  "--extra-request-body '{\"regex\": \"(yes|no)\"}'",
                  j),
            0);
  EXPECT_EQ(j["completed"], 4);
  // ignore_eos would run each to 30 tokens; the grammar ends each after "yes"/"no" (at most three
  // tokens from random weights) and its stop token.
  for (const auto& q : j["requests"]) EXPECT_LE(q["output_tokens"].get<int64_t>(), 4) << q;
}

TEST_F(BenchServing, ShareGptFile) {
  const std::string path = ::testing::TempDir() + "/sharegpt_" + std::to_string(::getpid()) + ".json";
  std::ofstream(path) << json::array(
      {{{"conversations", {{{"from", "human"}, {"value", "Tell me about the sea."}}, {{"from", "gpt"}, {"value", "It is big."}}}}},
       {{"conversations", {{{"from", "human"}, {"value", "Only one turn"}}}}},  // skipped: no reply
       {{"conversation", {{{"from", "human"}, {"value", "Count to five, please."}}, {{"from", "gpt"}, {"value", "1 2 3 4 5"}}}}}});
  json j;
  ASSERT_EQ(bench("--dataset sharegpt --dataset-path " + path + " --sharegpt-output-len 4 --num-prompts 10", j), 0);
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["total_output_tokens"], 8);
}

TEST_F(BenchServing, RefusedRequestsAreCountedWithTheServersMessage) {
  json j;
  std::string err;
  // Ids beyond the 151,936-token vocabulary: the server answers 400 to each.
  EXPECT_EQ(bench("--num-prompts 3 --random-input-len 4 --random-output-len 2 --random-vocab-size 2000000000", j, &err), 1);
  EXPECT_EQ(j["completed"], 0);
  EXPECT_EQ(j["failed"], 3);
  EXPECT_NE(j["first_error"].get<std::string>().find("HTTP 400"), std::string::npos) << j["first_error"];
  for (const auto& q : j["requests"]) EXPECT_NE(q["error"].get<std::string>().find("outside the vocabulary"), std::string::npos) << q;
  EXPECT_NE(err.find("every request failed"), std::string::npos) << err;
}

TEST(BenchServingFlags, BadFlagsExitTwoWithOneLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--backend grpc", "--backend: 'grpc' (allowed: completions, chat)"},
      {"--base-url localhost:30000", "--base-url 'localhost:30000' is not http://host:port"},
      {"--dataset sharegpt", "--dataset sharegpt needs --dataset-path FILE"},
      {"--dataset mmlu", "--dataset: 'mmlu' (allowed: random, sharegpt)"},
      {"--backend chat --random-prompt ids", "--backend chat sends text"},
      {"--random-prompt text", "--random-prompt text needs --tokenizer DIR"},
      {"--request-rate 0", "--request-rate: 0 must be > 0"},
      {"--extra-request-body '[1]'", "--extra-request-body: '[1]' is not a JSON object"},
      {"--random-range-ratio 2", "--random-range-ratio: 2 must be in [0, 1]"},
      {"--base-url http://127.0.0.1:9 --num-prompts 1", "cannot reach http://127.0.0.1:9/v1/models"},
  };
  for (const auto& [flags, says] : cases) {
    const auto r = run_loom("bench serving " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << flags << ": " << r.err;
  }
}

}  // namespace
}  // namespace loom::server::testing
