// The host-tensor backends, Gloo and host-copy, each with 1, 2, 3, 4 and 8 ranks as threads against
// a serial computation, byte counters, and the failure paths: a rank that never arrives, a rank that
// dies, counts that disagree, bad arguments.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "loom/parallel/gloo_communicator.h"
#include "loom/parallel/host_copy_communicator.h"
#include "loom/parallel/rank_launcher.h"
#include "parallel/collective_suite.h"
#include "parallel/error_of.h"

using namespace loom::parallel;
using namespace std::chrono_literals;

namespace {

std::vector<int> iota(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

enum class Backend { gloo, host_copy };
void PrintTo(Backend b, std::ostream* os) { *os << (b == Backend::gloo ? "gloo" : "host-copy"); }

std::unique_ptr<Communicator> make_comm(Backend b, const std::string& name, std::vector<int> ranks, int rank,
                                        Store& store, const std::string& key, std::chrono::milliseconds timeout) {
  if (b == Backend::host_copy) return std::make_unique<HostCopyCommunicator>(name, ranks, rank, store, key, timeout);
  static const auto dev = make_gloo_device("127.0.0.1");
  return std::make_unique<GlooCommunicator>(name, ranks, rank, store, key, dev, timeout);
}

class CpuCollectives : public ::testing::TestWithParam<Backend> {
 protected:
  std::unique_ptr<Communicator> comm(const std::string& name, std::vector<int> ranks, int rank, Store& store,
                                     const std::string& key, std::chrono::milliseconds timeout) {
    return make_comm(GetParam(), name, std::move(ranks), rank, store, key, timeout);
  }
  void run_suite_on_threads(int world) {
    run_local(world, 30s, [&](int rank, int, Store& store) {
      auto c = comm(loom::str("world", world), iota(world), rank, store, "suite", 30s);
      suite::run_collective_suite(*c, 1000 + world);
    });
  }
};

using loom::testing::error_of;

}  // namespace

INSTANTIATE_TEST_SUITE_P(Backends, CpuCollectives, ::testing::Values(Backend::gloo, Backend::host_copy),
                         [](const auto& info) { return info.param == Backend::gloo ? "gloo" : "host_copy"; });

TEST_P(CpuCollectives, CollectivesWith2Ranks) { run_suite_on_threads(2); }
TEST_P(CpuCollectives, CollectivesWith3Ranks) { run_suite_on_threads(3); }
TEST_P(CpuCollectives, CollectivesWith4Ranks) { run_suite_on_threads(4); }
TEST_P(CpuCollectives, CollectivesWith8Ranks) { run_suite_on_threads(8); }
TEST_P(CpuCollectives, CollectivesWith1Rank) { run_suite_on_threads(1); }

// bf16 sums accumulate in f32 and round once: 256 + 7 x 1 is 263, which rounds to 264 in bf16,
// while adding in bf16 step by step would stay at 256 (256 + 1 rounds back to 256).
TEST_P(CpuCollectives, Bf16SumsAccumulateInF32) {
  run_local(8, 30s, [&](int rank, int, Store& store) {
    auto c = comm("world8", iota(8), rank, store, "bf16", 30s);
    const float mine = rank == 0 ? 256.0f : 1.0f;
    loom::Tensor t = loom::Tensor::empty({8}, loom::DType::bf16);
    for (int i = 0; i < 8; ++i) static_cast<uint16_t*>(t.data_ptr())[i] = loom::f32_to_bf16(mine);
    loom::Tensor rs_out = loom::Tensor::empty({1}, loom::DType::bf16);
    c->reduce_scatter(t, rs_out);
    c->all_reduce_sum(t);
    for (int i = 0; i < 8; ++i)
      LOOM_CHECK(loom::bf16_to_f32(static_cast<uint16_t*>(t.data_ptr())[i]) == 264.0f, "all_reduce bf16 sum is ",
                 loom::bf16_to_f32(static_cast<uint16_t*>(t.data_ptr())[i]));
    LOOM_CHECK(loom::bf16_to_f32(static_cast<uint16_t*>(rs_out.data_ptr())[0]) == 264.0f, "reduce_scatter bf16 sum");
  });
}

TEST_P(CpuCollectives, CountsPayloadBytesPerOp) {
  run_local(2, 30s, [&](int rank, int, Store& store) {
    auto c = comm("pair", {0, 1}, rank, store, "bytes", 30s);
    loom::Tensor t = loom::Tensor::zeros({3, 4}, loom::DType::f32);
    c->all_reduce_sum(t);
    c->all_reduce_sum(t);
    loom::Tensor out = loom::Tensor::zeros({6, 4}, loom::DType::f32);
    c->all_gather(t, out);
    // Both ranks send 1 row to rank 0 and 2 rows to rank 1.
    loom::Tensor a2a_out = loom::Tensor::zeros({rank == 0 ? 2 : 4, 4}, loom::DType::f32);
    c->all_to_all(t, {1, 2}, a2a_out, rank == 0 ? std::vector<int64_t>{1, 1} : std::vector<int64_t>{2, 2});
    c->broadcast(t, 1);
    LOOM_CHECK(c->bytes_sent(CollectiveOp::all_reduce) == 2 * 48, "all_reduce bytes");
    LOOM_CHECK(c->calls(CollectiveOp::all_reduce) == 2, "all_reduce calls");
    LOOM_CHECK(c->bytes_sent(CollectiveOp::all_gather) == 48, "all_gather bytes");
    LOOM_CHECK(c->bytes_sent(CollectiveOp::all_to_all) == (rank == 0 ? 2 * 16 : 1 * 16), "all_to_all bytes");
    LOOM_CHECK(c->bytes_sent(CollectiveOp::broadcast) == (rank == 1 ? 48u : 0u), "broadcast bytes");
    LOOM_CHECK(c->sequence() == 5, "sequence");
    c->reset_counters();
    LOOM_CHECK(c->bytes_sent(CollectiveOp::all_reduce) == 0, "reset");
  });
}

TEST_P(CpuCollectives, BadArgumentsAreClearErrors) {
  HashStore store(5s);
  auto c = comm("solo", {0}, 0, store, "solo", 5s);
  loom::Tensor in = loom::Tensor::zeros({2, 3}, loom::DType::f32);
  loom::Tensor wrong = loom::Tensor::zeros({5, 3}, loom::DType::f32);
  EXPECT_NE(error_of([&] { c->all_gather(in, wrong); }).find("output has 5 rows, counts add up to 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c->all_gather(in, wrong, {1, 2}); }).find("2 counts for a group of 1"), std::string::npos);
  loom::Tensor other_cols = loom::Tensor::zeros({2, 4}, loom::DType::f32);
  EXPECT_NE(error_of([&] { c->all_gather(in, other_cols); }).find("dims after 0 must agree"), std::string::npos);
  loom::Tensor ints = loom::Tensor::zeros({2, 3}, loom::DType::i32);
  EXPECT_NE(error_of([&] { c->all_to_all(in, {2}, ints, {2}); }).find("dtypes"), std::string::npos);
  EXPECT_NE(error_of([&] { c->broadcast(in, 1); }).find("root 1 outside group of 1"), std::string::npos);
  loom::Tensor strided = loom::Tensor::zeros({3, 4}, loom::DType::f32).narrow(1, 0, 2);
  EXPECT_NE(error_of([&] { c->all_reduce_sum(strided); }).find("must be contiguous"), std::string::npos);
}

TEST_P(CpuCollectives, CountsThatDisagreeAcrossRanksAreAnErrorOnEveryRank) {
  std::vector<std::string> errors(2);
  run_local(2, 30s, [&](int rank, int, Store& store) {
    auto c = comm("pair", {0, 1}, rank, store, "mismatch", 30s);
    loom::Tensor in = loom::Tensor::zeros({rank + 1, 2}, loom::DType::f32);
    // Each rank's counts are consistent with its own tensors, but not with the other rank's.
    loom::Tensor out = loom::Tensor::zeros({rank == 0 ? 3 : 2, 2}, loom::DType::f32);
    errors[rank] += error_of([&] { c->all_gather(in, out, rank == 0 ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{0, 2}); });
    // Rank 0 sends one row to rank 1, which expects two.
    loom::Tensor a2a_in = loom::Tensor::zeros({2, 2}, loom::DType::f32);
    loom::Tensor a2a_out = loom::Tensor::zeros({rank == 0 ? 2 : 3, 2}, loom::DType::f32);
    errors[rank] += "|" + error_of([&] { c->all_to_all(a2a_in, {1, 1}, a2a_out, rank == 0 ? std::vector<int64_t>{1, 1} : std::vector<int64_t>{2, 1}); });
    loom::Tensor out3 = loom::Tensor::zeros({3, 2}, loom::DType::f32);
    c->all_gather(in, out3, {1, 2});  // still usable afterwards
  });
  EXPECT_NE(errors[0].find("all_gather: ranks disagree on the counts: group rank 1 has counts[0] = 0, group rank 0 has 1"), std::string::npos) << errors[0];
  EXPECT_EQ(errors[0], errors[1]);
  for (const auto& e : errors)
    EXPECT_NE(e.find("all_to_all: group rank 0 sends 1 rows to group rank 1, which expects 2 (its out_counts[0])"),
              std::string::npos)
        << e;
}

TEST_P(CpuCollectives, MissingRankTimesOutWithAClearError) {
  HashStore store(2s);
  const auto start = std::chrono::steady_clock::now();
  // A world of 3 where only rank 0 ever shows up.
  std::string err = error_of([&] {
    run_threads(1, 0, store, [&](int rank, int, Store& s) {
      auto c = comm("tp [0, 1, 2]", {0, 1, 2}, rank, s, "missing", 2s);
    });
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(err.find("rank 0: group tp [0, 1, 2]: rank(s) [1, 2] did not arrive within 2 s (--dist-timeout)"),
            std::string::npos)
      << err;
  EXPECT_GE(secs, 1.9);
  EXPECT_LT(secs, 10);
}

TEST_P(CpuCollectives, ARankThatDiesEndsTheOthers) {
  const auto start = std::chrono::steady_clock::now();
  std::string err = error_of([&] {
    run_local(3, 3s, [&](int rank, int, Store& store) {
      auto c = comm("tp", {0, 1, 2}, rank, store, "dies", 3s);
      loom::Tensor t = loom::Tensor::zeros({4}, loom::DType::f32);
      c->all_reduce_sum(t);
      if (rank == 1) throw loom::Error("boom");
      for (int i = 0; i < 3; ++i) c->all_reduce_sum(t);  // rank 1 never joins these
    });
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(err.find("rank 1: boom"), std::string::npos) << err;
  EXPECT_NE(err.find("other rank(s) failed"), std::string::npos) << err;
  EXPECT_LT(secs, 20);
}

// The peers' errors ("connection closed") may come before the failing rank's own: the launcher
// still names the rank that caused them.
TEST_P(CpuCollectives, TheCauseIsReportedEvenWhenThePeersFailFirst) {
  std::string err = error_of([&] {
    run_local(3, 30s, [&](int rank, int, Store& store) {
      auto c = comm("tp", {0, 1, 2}, rank, store, "cause", 30s);
      loom::Tensor t = loom::Tensor::zeros({4}, loom::DType::f32);
      if (rank == 1) {
        c->abort();  // the peers' all_reduce fails now...
        std::this_thread::sleep_for(300ms);
        throw loom::Error("boom");  // ...and this rank's own error comes well after theirs
      }
      c->all_reduce_sum(t);
    });
  });
  EXPECT_EQ(err.rfind("rank 1: boom", 0), 0u) << err;
  EXPECT_NE(err.find("(and 2 other rank(s) failed)"), std::string::npos) << err;
}

TEST(RankFailures, ACauseOutranksEarlierPeerFailures) {
  RankFailures f;
  EXPECT_FALSE(f.any());
  EXPECT_EQ(f.str(), "");
  f.add(0, std::make_exception_ptr(PeerFailure("connection closed")));
  EXPECT_EQ(f.str(), "rank 0 failed: connection closed");  // the best known so far
  f.add(2, std::make_exception_ptr(loom::Error("out of memory")));
  f.add(1, std::make_exception_ptr(loom::Error("later")));
  f.add(3, std::make_exception_ptr(PeerFailure("timeout")));
  EXPECT_EQ(f.count(), 4);
  EXPECT_EQ(f.cause().first, 2);
  EXPECT_EQ(f.str(), "rank 2 failed: out of memory");
}

TEST(Launcher, PropagatesTheRankAndKeepsInvalidArgument) {
  std::string err;
  try {
    run_local(4, 5s, [](int rank, int local, Store&) {
      if (rank == 2) throw loom::InvalidArgument("bad flag");
    });
  } catch (const loom::InvalidArgument& e) {
    err = e.what();
  }
  EXPECT_EQ(err, "rank 2: bad flag");
  std::vector<int> seen(4, -1);
  run_local(4, 5s, [&](int rank, int local, Store&) { seen[rank] = local; });
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3}));
}
