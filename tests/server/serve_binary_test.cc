// The real `loom serve` binary: it answers on the port it reports, SIGTERM stops it gracefully
// (an in-flight stream still gets its end) with exit 0, and bad flags exit 2 with one line.
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <regex>
#include <thread>

#include "cli/run_command.h"
#include "serve_process.h"
#include "server_harness.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;
using loom::testing::count_lines;
using loom::testing::read_file;
using loom::testing::run_loom;


std::string tokenizer_dir() { return std::string(LOOM_TEST_DATA) + "/tokenizers/qwen3"; }

TEST(ServeBinary, AnswersAndExitsZeroOnSigtermFinishingInFlightStreams) {
  ServeProcess p({"--model-path", tiny_model_dir(), "--tokenizer", tokenizer_dir(), "--port", "0",
                  "--served-model-name", "tiny", "--shutdown-timeout", "1", "--max-running-requests", "4"});
  const int port = p.wait_port();
  ASSERT_GT(port, 0) << p.log();
  EXPECT_EQ(http(port, "GET", "/health").status, 200);
  Streamed chat = stream(port, "/v1/chat/completions",
                         {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Hello!"}}}}, {"max_tokens", 5}});
  EXPECT_EQ(chat.status, 200) << chat.body;
  EXPECT_TRUE(chat.done);

  // A long stream is in flight when SIGTERM arrives: it still ends properly.
  HttpConnection c(port);
  c.send_request("POST", "/v1/completions",
                 json{{"prompt", "go on"}, {"max_tokens", 4000}, {"ignore_eos", true}, {"stream", true}}.dump());
  bool signalled = false;
  const HttpResponse rest = c.read_response([&](const std::string& body) {
    if (!signalled && body.find("data: ") != std::string::npos) {
      p.signal(SIGTERM);  // once the stream is flowing
      signalled = true;
    }
    return true;
  });
  EXPECT_TRUE(signalled);
  EXPECT_EQ(p.wait_exit(), 0) << p.log();
  const auto events = sse_data(rest.body);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_NE(rest.body.find("\"finish_reason\":\"abort\""), std::string::npos) << rest.body.substr(0, 2000);
  EXPECT_NE(p.log().find("SIGTERM"), std::string::npos);
}

TEST(ServeBinary, BadFlagsExitTwoWithOneLineNamingTheFlag) {
  const std::string model = "--model-path " + tiny_model_dir() + " --tokenizer " + tokenizer_dir();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {model + " --port 70000", "--port"},
      {model + " --max-running-requests 0", "--max-running-requests"},
      {model + " --chunked-prefill-size x", "--chunked-prefill-size"},
      {model + " --no-such-flag 1", "--no-such-flag"},
      {model + " --disable-radix-cache maybe", "--disable-radix-cache"},
      {"--model-path /nonexistent/dir", "--model-path"},
      {"--model-path " + tiny_model_dir() + " --tokenizer /nonexistent/dir", "--tokenizer"},
  };
  for (const auto& [flags, name] : cases) {
    const auto r = run_loom("serve " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace loom::server::testing
