// The real `loom serve` binary as a child process: started with flags, its stderr in a log file,
// the port it reports read back, signalled and reaped. Shared by the tests that drive the binary.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run_command.h"

extern char** environ;

namespace loom::server::testing {

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
      const std::string log = loom::testing::read_file(log_);
      if (std::regex_search(log, m, listening)) return std::stoi(m[1]);
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        ADD_FAILURE() << "loom serve ended early with status " << status << ": " << loom::testing::read_file(log_);
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
  std::string log() const { return loom::testing::read_file(log_); }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

}  // namespace loom::server::testing
