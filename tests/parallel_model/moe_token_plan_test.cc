// Where MoE tokens come from in each layout (parallel/moe_token_plan.h), on DESIGN.md's examples.
#include <gtest/gtest.h>

#include "loom/parallel/moe_token_plan.h"
#include "loom/tensor/error.h"

using namespace loom::parallel;

namespace {

ParallelConfig make(int tp, int ep, int moe_dp, int cp, int dp) {
  ParallelConfig c;
  c.tp = tp;
  c.ep = ep;
  c.moe_dp = moe_dp;
  c.attn_cp = cp;
  c.attn_dp = dp;
  return c;
}

TEST(MoeTokenPlan, PlainTensorAndExpertParallelKeepTheTokens) {
  for (const auto& c : {make(4, 1, 1, 1, 1), make(4, 4, 1, 1, 1), make(4, 2, 1, 1, 1)})
    for (int r = 0; r < 4; ++r) EXPECT_EQ(moe_token_plan(c, r, false).mode, TokenExchange::own) << c.str();
}

TEST(MoeTokenPlan, MoeDpSplitsTheTokensOfOneAttentionGroup) {
  const auto p = moe_token_plan(make(4, 2, 2, 1, 1), 3, false);  // blocks {0,1} {2,3}
  EXPECT_EQ(p.mode, TokenExchange::split);
  EXPECT_EQ(p.members, (std::vector<int>{1, 3}));
  EXPECT_EQ(p.index, 1);
}

TEST(MoeTokenPlan, CpPartnersMeetBeforeMoeUnlessMoeDpMatchesCp) {
  const auto tp_cp = moe_token_plan(make(4, 1, 1, 2, 1), 1, true);  // ATTN_CP {1,3}
  EXPECT_EQ(tp_cp.mode, TokenExchange::gather);
  EXPECT_EQ(tp_cp.members, (std::vector<int>{1, 3}));
  // DESIGN.md's example tp 4, attn_cp 2, ep 2, moe_dp 2: each MOE_EP group holds one CP chunk.
  for (int r = 0; r < 4; ++r) EXPECT_EQ(moe_token_plan(make(4, 2, 2, 2, 1), r, true).mode, TokenExchange::own);
  // Without the split (decode, short prompts) CP ranks hold the same tokens: no gather.
  EXPECT_EQ(moe_token_plan(make(4, 1, 1, 2, 1), 1, false).mode, TokenExchange::own);
}

TEST(MoeTokenPlan, AttentionDpReplicasGatherForExpertParallelism) {
  const auto p = moe_token_plan(make(2, 2, 1, 1, 2), 1, false);
  EXPECT_EQ(p.mode, TokenExchange::gather);
  EXPECT_EQ(p.members, (std::vector<int>{0, 1}));
  EXPECT_EQ(p.index, 1);
}

TEST(MoeTokenPlan, OverlappingGroupsAreRejectedNamingTheSizes) {
  // tp 6, dp 2 (attention groups of 3), ep 2 (MoE blocks of 2): neither contains the other.
  EXPECT_THROW(moe_token_plan(make(6, 2, 3, 1, 2), 0, false), loom::InvalidArgument);
}

}  // namespace
