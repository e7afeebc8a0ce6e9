// Property tests of the rank layout over every configuration of world sizes 1-16 (with and without
// pp), plus the worked examples of DESIGN.md and SGLang's parallel_state docstring.
#include <gtest/gtest.h>

#include <set>

#include "loom/parallel/layout.h"
#include "loom/tensor/error.h"

using namespace loom::parallel;
using Groups = std::vector<std::vector<int>>;

namespace {

std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int k = 1; k <= n; ++k)
    if (n % k == 0) d.push_back(k);
  return d;
}

// Every valid configuration with world = tp x pp <= 16.
std::vector<ParallelConfig> all_configs() {
  std::vector<ParallelConfig> out;
  for (int world = 1; world <= 16; ++world)
    for (int pp : divisors(world)) {
      const int tp = world / pp;
      for (int attn_dp : divisors(tp))
        for (int attn_cp : divisors(tp / attn_dp))
          for (int moe_dp : divisors(tp))
            for (int ep : divisors(tp / moe_dp)) {
              ParallelConfig c;
              c.tp = tp, c.pp = pp, c.attn_dp = attn_dp, c.attn_cp = attn_cp, c.moe_dp = moe_dp, c.ep = ep;
              c.validate();
              out.push_back(c);
            }
    }
  return out;
}

Groups G(std::initializer_list<std::vector<int>> g) { return Groups(g); }

}  // namespace

TEST(Layout, CoversHundredsOfConfigs) {
  auto configs = all_configs();
  EXPECT_GT(configs.size(), 500u);
  int with_pp = 0;
  for (const auto& c : configs) with_pp += c.pp > 1;
  EXPECT_GT(with_pp, 100);
}

TEST(Layout, EveryFamilyPartitionsTheWorld) {
  for (const auto& c : all_configs()) {
    for (Family f : kAllFamilies) {
      std::vector<int> seen(c.world_size(), 0);
      auto groups = family_groups(c, f);
      for (const auto& g : groups) {
        ASSERT_FALSE(g.empty());
        ASSERT_EQ(g.size(), groups[0].size()) << c.str() << " " << family_name(f) << ": uneven groups";
        for (int r : g) {
          ASSERT_GE(r, 0);
          ASSERT_LT(r, c.world_size());
          ++seen[r];
        }
      }
      for (int r = 0; r < c.world_size(); ++r)
        ASSERT_EQ(seen[r], 1) << c.str() << " " << family_name(f) << ": rank " << r << " in " << seen[r]
                              << " groups";
    }
  }
}

TEST(Layout, GroupSizesMatchTheConfig) {
  for (const auto& c : all_configs()) {
    const bool alias = c.attn_cp > c.moe_dp;
    const std::pair<Family, int> expect[] = {
        {Family::tp, c.tp},           {Family::pp, c.pp},         {Family::attn_tp, c.attn_tp()},
        {Family::attn_cp, c.attn_cp}, {Family::attn_dp, c.attn_dp}, {Family::moe_tp, c.moe_tp()},
        {Family::moe_ep, c.ep},       {Family::moe_dp, alias ? c.attn_cp : c.moe_dp}};
    for (auto [f, n] : expect)
      ASSERT_EQ(static_cast<int>(group_of(c, f, 0).size()), n) << c.str() << " " << family_name(f);
  }
}

TEST(Layout, CoordinatesReproduceGroups) {
  for (const auto& c : all_configs()) {
    for (int r = 0; r < c.world_size(); ++r) {
      const RankCoords k = rank_coords(c, r);
      ASSERT_EQ(k.rank, r);
      for (Family f : kAllFamilies) {
        auto g = group_of(c, f, r);
        // The rank sits at its coordinate in its group...
        ASSERT_LT(k.in(f), static_cast<int>(g.size())) << c.str() << " " << family_name(f);
        ASSERT_EQ(g[k.in(f)], r) << c.str() << " rank " << r << " " << family_name(f);
        // ...every member has the same group, at its own coordinate...
        for (size_t m = 0; m < g.size(); ++m) {
          ASSERT_EQ(group_of(c, f, g[m]), g) << c.str() << " " << family_name(f);
          ASSERT_EQ(rank_coords(c, g[m]).in(f), static_cast<int>(m));
        }
      }
      // ...and members of a family's group agree on the coordinates that define the others.
      for (int m : group_of(c, Family::attn_tp, r)) {
        ASSERT_EQ(rank_coords(c, m).attn_cp_rank, k.attn_cp_rank);
        ASSERT_EQ(rank_coords(c, m).attn_dp_rank, k.attn_dp_rank);
      }
      for (int m : group_of(c, Family::attn_cp, r)) {
        ASSERT_EQ(rank_coords(c, m).attn_tp_rank, k.attn_tp_rank);
        ASSERT_EQ(rank_coords(c, m).attn_dp_rank, k.attn_dp_rank);
      }
      for (int m : group_of(c, Family::moe_ep, r)) {
        ASSERT_EQ(rank_coords(c, m).moe_tp_rank, k.moe_tp_rank);
        if (!c.moe_dp_is_attn_cp()) ASSERT_EQ(rank_coords(c, m).moe_dp_rank, k.moe_dp_rank);  // else it is attn_cp's
      }
      for (int m : group_of(c, Family::moe_tp, r)) {
        ASSERT_EQ(rank_coords(c, m).moe_ep_rank, k.moe_ep_rank);
        if (!c.moe_dp_is_attn_cp()) ASSERT_EQ(rank_coords(c, m).moe_dp_rank, k.moe_dp_rank);
      }
      for (int m : group_of(c, Family::pp, r)) ASSERT_EQ(rank_coords(c, m).tp_rank, k.tp_rank);
      for (int m : group_of(c, Family::tp, r)) ASSERT_EQ(rank_coords(c, m).pp_rank, k.pp_rank);
      ASSERT_EQ(k.pp_rank * c.tp + k.tp_rank, r);
    }
  }
}

// ATTN_TP x ATTN_CP x ATTN_DP (and MOE_TP x MOE_EP x MOE_DP) coordinates name each rank of the TP
// group exactly once, and the three groups through a rank lie inside its TP group.
TEST(Layout, SubFamiliesCoverTheTpGroupExactlyOnce) {
  int moe_checked = 0;
  for (const auto& c : all_configs()) {
    for (int block = 0; block < c.pp; ++block) {
      const auto tp_group = group_of(c, Family::tp, block * c.tp);
      const std::set<int> tp_set(tp_group.begin(), tp_group.end());
      std::set<std::tuple<int, int, int>> attn, moe;
      for (int r : tp_group) {
        const auto k = rank_coords(c, r);
        ASSERT_TRUE(attn.insert({k.attn_tp_rank, k.attn_cp_rank, k.attn_dp_rank}).second) << c.str();
        ASSERT_LT(k.attn_tp_rank, c.attn_tp());
        ASSERT_LT(k.attn_cp_rank, c.attn_cp);
        ASSERT_LT(k.attn_dp_rank, c.attn_dp);
        for (Family f : {Family::attn_tp, Family::attn_cp, Family::attn_dp, Family::moe_tp, Family::moe_ep,
                         Family::moe_dp})
          for (int m : group_of(c, f, r)) ASSERT_TRUE(tp_set.count(m)) << c.str() << " " << family_name(f);
        if (!c.moe_dp_is_attn_cp()) {
          ASSERT_TRUE(moe.insert({k.moe_tp_rank, k.moe_ep_rank, k.moe_dp_rank}).second) << c.str();
          ASSERT_LT(k.moe_dp_rank, c.moe_dp);
        }
        ASSERT_LT(k.moe_tp_rank, c.moe_tp());
        ASSERT_LT(k.moe_ep_rank, c.ep);
      }
      ASSERT_EQ(static_cast<int>(attn.size()), c.tp);
      if (!c.moe_dp_is_attn_cp()) {
        ASSERT_EQ(static_cast<int>(moe.size()), c.tp);
        ++moe_checked;
      }
    }
  }
  EXPECT_GT(moe_checked, 300);
}

// When attn_cp > moe_dp, the tokens of CP partners must meet before MoE: MOE_DP is ATTN_CP.
TEST(Layout, MoeDpIsAttnCpWhenCpExceedsMoeDp) {
  int n = 0;
  for (const auto& c : all_configs()) {
    if (!c.moe_dp_is_attn_cp()) continue;
    ++n;
    EXPECT_EQ(family_groups(c, Family::moe_dp), family_groups(c, Family::attn_cp)) << c.str();
    for (int r = 0; r < c.world_size(); ++r)
      EXPECT_EQ(rank_coords(c, r).moe_dp_rank, rank_coords(c, r).attn_cp_rank);
  }
  EXPECT_GT(n, 50);
}

TEST(Layout, DesignDocExample) {
  // tp 4, attn_cp 2, ep 2, moe_dp 2 (so attn_tp 2, moe_tp 1).
  ParallelConfig c;
  c.tp = 4, c.attn_cp = 2, c.ep = 2, c.moe_dp = 2;
  c.validate();
  EXPECT_EQ(c.attn_tp(), 2);
  EXPECT_EQ(c.moe_tp(), 1);
  EXPECT_EQ(family_groups(c, Family::attn_tp), G({{0, 1}, {2, 3}}));
  EXPECT_EQ(family_groups(c, Family::attn_cp), G({{0, 2}, {1, 3}}));
  EXPECT_EQ(family_groups(c, Family::moe_ep), G({{0, 1}, {2, 3}}));
  EXPECT_EQ(family_groups(c, Family::moe_dp), G({{0, 2}, {1, 3}}));
  EXPECT_EQ(family_groups(c, Family::moe_tp), G({{0}, {1}, {2}, {3}}));
  EXPECT_EQ(family_groups(c, Family::tp), G({{0, 1, 2, 3}}));
  EXPECT_EQ(family_groups(c, Family::attn_dp), G({{0}, {1}, {2}, {3}}));
}

TEST(Layout, SglangDocstringExamples) {
  // tp 2, pp 4 on 8 GPUs.
  ParallelConfig a;
  a.tp = 2, a.pp = 4;
  EXPECT_EQ(family_groups(a, Family::tp), G({{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(family_groups(a, Family::pp), G({{0, 2, 4, 6}, {1, 3, 5, 7}}));
  // tp 8 = attn_cp 2 x attn_tp 4; moe_dp 2 x moe_ep 4.
  ParallelConfig b;
  b.tp = 8, b.attn_cp = 2, b.moe_dp = 2, b.ep = 4;
  EXPECT_EQ(family_groups(b, Family::attn_cp), G({{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(family_groups(b, Family::attn_tp), G({{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(family_groups(b, Family::moe_ep), G({{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(family_groups(b, Family::moe_dp), G({{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  // tp 4 with attention DP 2: two attention replicas of attn_tp 2.
  ParallelConfig d;
  d.tp = 4, d.attn_dp = 2;
  EXPECT_EQ(family_groups(d, Family::attn_tp), G({{0, 1}, {2, 3}}));
  EXPECT_EQ(family_groups(d, Family::attn_dp), G({{0, 2}, {1, 3}}));
  // With pp the second stage's groups are the first's shifted by tp.
  ParallelConfig e = b;
  e.pp = 2;
  EXPECT_EQ(family_groups(e, Family::attn_cp),
            G({{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}}));
  EXPECT_EQ(family_groups(e, Family::pp), G({{0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}}));
}

// Validation: every impossible combination is an InvalidArgument naming the flags and numbers.
static std::string validation_error(const ParallelConfig& c, int local_devices = 0) {
  try {
    c.validate(local_devices);
  } catch (const loom::InvalidArgument& e) {
    return e.what();
  }
  return "";
}

TEST(ParallelConfig, RejectsImpossibleCombinations) {
  ParallelConfig c;
  c.tp = 6, c.ep = 4;
  EXPECT_NE(validation_error(c).find("--tp-size 6 is not divisible by --ep-size 4"), std::string::npos)
      << validation_error(c);
  c = {};
  c.tp = 4, c.attn_cp = 3;
  EXPECT_NE(validation_error(c).find("--attn-cp-size 3"), std::string::npos) << validation_error(c);
  c = {};
  c.tp = 8, c.attn_cp = 4, c.attn_dp = 4;
  EXPECT_NE(validation_error(c).find("--dp-size 4 x --attn-cp-size 4 = 16"), std::string::npos);
  c = {};
  c.tp = 8, c.moe_dp = 4, c.ep = 4;
  EXPECT_NE(validation_error(c).find("--moe-dp-size 4"), std::string::npos);
  c = {};
  c.tp = 8;
  EXPECT_NE(validation_error(c, 4).find("world size 8 (--tp-size 8 x --pp-size 1) != --nnodes 1 x 4 local devices"),
            std::string::npos)
      << validation_error(c, 4);
  EXPECT_EQ(validation_error(c, 8), "");
  c.nnodes = 2;
  EXPECT_NE(validation_error(c).find("--dist-init-addr"), std::string::npos);
  c.dist_init_addr = "10.0.0.1:5000";
  EXPECT_EQ(validation_error(c, 4), "");
  c.node_rank = 2;
  EXPECT_NE(validation_error(c).find("--node-rank 2"), std::string::npos);
  c.node_rank = 0;
  c.dist_init_addr = "10.0.0.1";
  EXPECT_NE(validation_error(c).find("not host:port"), std::string::npos);
  c.dist_init_addr = "10.0.0.1:99999";
  EXPECT_NE(validation_error(c).find("port '99999'"), std::string::npos);
  c = {};
  c.tp = 3, c.nnodes = 2, c.dist_init_addr = "h:1";
  EXPECT_NE(validation_error(c).find("not divisible by --nnodes 2"), std::string::npos);
  c = {};
  c.tp = 0;
  EXPECT_NE(validation_error(c).find("--tp-size must be >= 1"), std::string::npos);
}
