// Two processes x two ranks rendezvousing over loopback through the TCP store on "node 0": the
// test binary re-runs itself as each node (MultiProcess.Child, driven by environment variables).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "loom/parallel/process_groups.h"
#include "loom/parallel/rank_launcher.h"
#include "loom/parallel/tcp_store.h"
#include "parallel/collective_suite.h"

extern char** environ;

using namespace loom::parallel;
using namespace std::chrono_literals;

namespace {

ParallelConfig two_node_config(int node, const std::string& addr, int timeout_s) {
  ParallelConfig c;
  c.tp = 4, c.attn_cp = 2, c.ep = 2, c.nnodes = 2, c.node_rank = node;
  c.dist_init_addr = addr;
  c.dist_timeout_s = timeout_s;
  return c;
}

int free_port() {
  TcpStoreServer probe("127.0.0.1", 0);
  return probe.port();
}

pid_t spawn_self(const std::vector<std::string>& env_extra) {
  std::vector<std::string> env_s(env_extra);
  for (char** e = environ; *e; ++e) env_s.push_back(*e);
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe", filter = "--gtest_filter=MultiProcess.Child";
  char* argv[] = {exe.data(), filter.data(), nullptr};
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);
  return pid;
}

// Exit status of `pid`, or -1 after killing it when it runs past `limit`.
int wait_for(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(20ms);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST(MultiProcess, Child) {
  const char* node = std::getenv("LOOM_PARALLEL_CHILD_NODE");
  if (!node) GTEST_SKIP() << "runs only as a child of MultiProcess.TwoProcessesTwoRanksEach";
  const ParallelConfig c = two_node_config(std::atoi(node), std::getenv("LOOM_PARALLEL_CHILD_ADDR"), 30);
  auto dev = make_gloo_device("127.0.0.1");
  run_node(c, [&](int rank, int local, Store& store) {
    LOOM_CHECK(rank == c.node_rank * 2 + local, "global rank");
    ProcessGroupOptions o;
    o.gloo_device = dev;
    o.timeout = 30s;
    ProcessGroups pg(c, rank, store, o);
    suite::run_collective_suite(pg.device(Family::tp), 4242);       // spans both processes
    suite::run_collective_suite(pg.device(Family::attn_cp), 4343);  // {0, 2}, {1, 3}: across them
    suite::run_collective_suite(pg.cpu(Family::attn_tp), 4444);     // {0, 1}, {2, 3}: within one
  });
  std::ofstream(std::getenv("LOOM_PARALLEL_CHILD_DONE")) << "ok";
}

TEST(MultiProcess, TwoProcessesTwoRanksEach) {
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  const std::string done = ::testing::TempDir() + "loom_parallel_child_" + std::to_string(getpid()) + "_";
  std::vector<pid_t> pids;
  for (int node = 0; node < 2; ++node) {
    std::remove((done + std::to_string(node)).c_str());
    pids.push_back(spawn_self({"LOOM_PARALLEL_CHILD_NODE=" + std::to_string(node), "LOOM_PARALLEL_CHILD_ADDR=" + addr,
                               "LOOM_PARALLEL_CHILD_DONE=" + done + std::to_string(node)}));
  }
  for (int node = 0; node < 2; ++node) {
    EXPECT_EQ(wait_for(pids[node], 120s), 0) << "node " << node;
    std::ifstream f(done + std::to_string(node));
    std::string s;
    f >> s;
    EXPECT_EQ(s, "ok") << "node " << node << " did not finish its collectives";
  }
}

TEST(MultiProcess, MissingNodeIsAClearTimeout) {
  const ParallelConfig c = two_node_config(0, "127.0.0.1:" + std::to_string(free_port()), 2);
  const auto start = std::chrono::steady_clock::now();
  std::string err;
  try {
    run_node(c, [&](int rank, int, Store& store) { ProcessGroups pg(c, rank, store); });
  } catch (const loom::Error& e) {
    err = e.what();
  }
  EXPECT_NE(err.find("tp [0, 1, 2, 3] (gloo): rank(s) [2, 3] did not arrive within 2 s (--dist-timeout)"),
            std::string::npos)
      << err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);
}
