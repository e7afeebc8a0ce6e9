// The rendezvous stores: in-process and TCP, waits that end with an error naming the keys, abort.
#include <gtest/gtest.h>

#include <thread>

#include "loom/parallel/tcp_store.h"
#include "parallel/error_of.h"

using namespace loom::parallel;
using namespace std::chrono_literals;

using loom::testing::error_of;

TEST(HashStore, SetGetWaitAcrossThreads) {
  HashStore s(5s);
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    s.set_string("a", "hello");
  });
  EXPECT_EQ(s.get_string("a"), "hello");
  t.join();
  EXPECT_TRUE(s.check("a"));
  EXPECT_FALSE(s.check("b"));
}

TEST(HashStore, TimeoutNamesMissingKeysAndAbortWakesWaiters) {
  HashStore s(200ms);
  s.set_string("x", "1");
  auto err = error_of([&] { s.wait({"x", "y"}); });
  EXPECT_NE(err.find("timed out after 0.2 s"), std::string::npos) << err;
  EXPECT_NE(err.find("'y'"), std::string::npos) << err;
  EXPECT_EQ(err.find("'x'"), std::string::npos) << err;
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    s.abort("rank 3 failed");
  });
  auto start = std::chrono::steady_clock::now();
  err = error_of([&] { s.wait({"never"}, 10s); });
  t.join();
  EXPECT_NE(err.find("rank 3 failed"), std::string::npos) << err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(TcpStore, ClientsShareKeysThroughTheServer) {
  TcpStore node0("127.0.0.1", 0, 5s, /*start_server=*/true);
  ASSERT_GT(node0.port(), 0);
  TcpStore node1("127.0.0.1", node0.port(), 5s);
  EXPECT_EQ(node1.local_address(), "127.0.0.1");
  std::string big(100000, 'z');
  // Many concurrent blocking waits on one client must not block each other's sets.
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i)
    threads.emplace_back([&, i] {
      Store& mine = i % 2 ? static_cast<Store&>(node0) : static_cast<Store&>(node1);
      mine.set_string("k" + std::to_string(i), std::to_string(i));
      for (int j = 0; j < 6; ++j) EXPECT_EQ(mine.get_string("k" + std::to_string(j)), std::to_string(j));
    });
  for (auto& t : threads) t.join();
  node0.set_string("big", big);
  EXPECT_EQ(node1.get_string("big"), big);
  EXPECT_TRUE(node1.check("k3"));
  EXPECT_FALSE(node1.check("nope"));
}

TEST(TcpStore, TimeoutsAndAbortReachClients) {
  TcpStore node0("127.0.0.1", 0, 300ms, true);
  TcpStore node1("127.0.0.1", node0.port(), 300ms);
  auto err = error_of([&] { node1.get("missing"); });
  EXPECT_NE(err.find("timed out after 0.3 s"), std::string::npos) << err;
  EXPECT_NE(err.find("'missing'"), std::string::npos) << err;
  std::thread t([&] {
    std::this_thread::sleep_for(100ms);
    node0.abort("rank 5 died");
  });
  err = error_of([&] { node1.wait({"x"}, 10s); });
  t.join();
  EXPECT_NE(err.find("rank 5 died"), std::string::npos) << err;
}

TEST(TcpStore, NoServerIsAClearErrorAfterTheTimeout) {
  int port;
  {
    TcpStoreServer probe("127.0.0.1", 0);  // a port that is free once the probe is gone
    port = probe.port();
  }
  auto err = error_of([&] { TcpStore client("127.0.0.1", port, 500ms); });
  EXPECT_NE(err.find("cannot reach node 0 at 127.0.0.1:" + std::to_string(port)), std::string::npos) << err;
  EXPECT_NE(err.find("--dist-timeout"), std::string::npos) << err;
}
