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
#include "server_harness.h"

extern char** environ;

namespace loom::server::testing {
namespace {

using json = nlohmann::json;
using loom::testing::count_lines;
using loom::testing::read_file;
using loom::testing::run_loom;

class ServeProcess {
 public:
  explicit ServeProcess(std::vector<std::string> flags) {
    log_ = ::testing::TempDir() + "/loom_serve_" + std::to_string(::getpid()) + ".log";
    std::vector<std::string> argv = {LOOM_BINARY, "serve"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, LOOM_BINARY, &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot start " + std::string(LOOM_BINARY));
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait_exit();
    }
  }

  // The port from "listening on http://HOST:PORT" (-1 if the process ended or never said it).
  int wait_port() {
    const std::regex listening("listening on http://[^:]+:([0-9]+)");
    for (int i = 0; i < 600; ++i) {
      std::smatch m;
      const std::string log = read_file(log_);
      if (std::regex_search(log, m, listening)) return std::stoi(m[1]);
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        ADD_FAILURE() << "loom serve ended early with status " << status << ": " << read_file(log_);
        pid_ = -1;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }
  void signal(int sig) { ::kill(pid_, sig); }
  // Exit code (128 + signal when killed).
  int wait_exit() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string log() const { return read_file(log_); }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

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
