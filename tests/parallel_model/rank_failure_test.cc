// A rank that fails mid-step must not leave its peers waiting in a collective until
// --dist-timeout: the step fails at once naming the rank that failed first, and the runner then
// refuses every later step with the same cause (its communicators were aborted).
#include <gtest/gtest.h>

#include <chrono>

#include "loom/runtime/parallel_runner.h"
#include "model/reference.h"
#include "parallel/error_of.h"

using namespace loom;
using loom::testing::error_of;

namespace {

struct Case {
  const char* name;
  int tp, attn_cp, ep, moe_dp, failing_rank;
  const char* dist_backend = "auto";  // auto: Gloo; host-copy: what the ThreadSanitizer job runs
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }


class RankFailure : public ::testing::TestWithParam<Case> {};

TEST_P(RankFailure, PeersStopAtOnceAndLaterStepsSayWhy) {
  const Case c = GetParam();
  runtime::RunnerOptions o;
  o.model_path = loom::testing::model_dir("tiny-qwen3-moe");
  o.max_total_tokens = 256;
  o.parallel.tp = c.tp;
  o.parallel.attn_cp = c.attn_cp;
  o.parallel.prefill_cp = c.attn_cp > 1;
  o.parallel.ep = c.ep;
  o.parallel.moe_dp = c.moe_dp;
  o.parallel.dist_timeout_s = 600;  // the wait a failed rank used to cost its peers
  o.dist_backend = c.dist_backend;
  auto runner = runtime::create_runner(o);
  auto pages = *runner->kv_pool().allocate(runner->kv_pool().pages_for_tokens(32));
  model::ForwardBatch batch;
  batch.seqs = {{{1, 2, 3, 4, 5, 6, 7, 8, 9}, 0, pages, false}};

  const auto healthy = runner->forward(batch).to_float_vector();  // the groups work before the failure
  ASSERT_FALSE(healthy.empty());
  EXPECT_EQ(runner->failure(), "");

  runtime::inject_rank_failure(*runner, c.failing_rank, "injected fault");
  const auto start = std::chrono::steady_clock::now();
  const std::string first = error_of([&] { runner->forward(batch); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 60.0) << "the peers waited for the failed rank instead of being stopped";
  EXPECT_NE(first.find("rank " + std::to_string(c.failing_rank) + ": injected fault"), std::string::npos) << first;
  EXPECT_NE(runner->failure().find("rank " + std::to_string(c.failing_rank) + " failed: injected fault"),
            std::string::npos)
      << runner->failure();

  const std::string later = error_of([&] { runner->forward(batch); });
  EXPECT_NE(later.find("stopped earlier"), std::string::npos) << later;
  EXPECT_NE(later.find("injected fault"), std::string::npos) << later;
}

INSTANTIATE_TEST_SUITE_P(Configs, RankFailure,
                         ::testing::Values(Case{"tp2_rank1", 2, 1, 1, 1, 1},
                                           Case{"tp2_rank0", 2, 1, 1, 1, 0},
                                           Case{"tp4_cp2_ep2_moedp2_rank3", 4, 2, 2, 2, 3},
                                           Case{"tp2_rank1_host_copy", 2, 1, 1, 1, 1, "host-copy"},
                                           Case{"tp2_rank0_host_copy", 2, 1, 1, 1, 0, "host-copy"},
                                           Case{"tp4_cp2_ep2_moedp2_rank3_host_copy", 4, 2, 2, 2, 3, "host-copy"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
