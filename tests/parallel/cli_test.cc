// `loom parallel-layout` through the real binary: JSON groups, and bad configurations end with one
// line and exit code 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/run_command.h"

namespace {

// Each call captures into its own files: ctest runs these tests as concurrent processes.
loom::testing::CommandResult run(const std::string& flags) { return loom::testing::run_loom("parallel-layout " + flags); }

using Groups = std::vector<std::vector<int>>;

}  // namespace

TEST(ParallelLayoutCli, JsonMatchesTheDesignExample) {
  auto r = run("--tp 4 --attn-cp-size 2 --ep-size 2 --moe-dp-size 2 --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["world_size"], 4);
  EXPECT_EQ(j["groups"]["attn_tp"].get<Groups>(), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(j["groups"]["attn_cp"].get<Groups>(), (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(j["groups"]["moe_ep"].get<Groups>(), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(j["groups"]["moe_dp"].get<Groups>(), (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(j["groups"]["moe_tp"].get<Groups>(), (Groups{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(j["groups"]["tp"].get<Groups>(), (Groups{{0, 1, 2, 3}}));
  EXPECT_EQ(j["groups"]["pp"].get<Groups>(), (Groups{{0}, {1}, {2}, {3}}));
  ASSERT_EQ(j["ranks"].size(), 4u);
  EXPECT_EQ(j["ranks"][2]["attn_cp_rank"], 1);
  EXPECT_EQ(j["ranks"][2]["moe_ep_rank"], 0);
  EXPECT_EQ(j["ranks"][2]["moe_dp_rank"], 1);
}

TEST(ParallelLayoutCli, PipelineAndTextFormat) {
  auto r = run("--tp-size 8 --attn-cp-size 2 --ep-size 2 --pp-size 2 --format json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["world_size"], 16);
  EXPECT_EQ(j["groups"]["pp"].size(), 8u);
  EXPECT_EQ(j["groups"]["pp"][3].get<std::vector<int>>(), (std::vector<int>{3, 11}));
  auto t = run("--tp 8 --attn-cp-size 2 --ep-size 2");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("attn_cp  [0, 4] [1, 5] [2, 6] [3, 7]"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("MOE_DP is the ATTN_CP group"), std::string::npos) << t.out;
}

TEST(ParallelLayoutCli, BadConfigurationsExit2WithOneLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"--tp 6 --ep-size 4", "--tp-size 6 is not divisible by --ep-size 4"},
      {"--tp 4 --attn-cp-size 3", "--attn-cp-size 3"},
      {"--tp 8 --enable-dp-attention --dp-size 4 --attn-cp-size 4", "--dp-size 4 x --attn-cp-size 4 = 16"},
      {"--tp 4 --dp-size 2", "needs --enable-dp-attention"},
      {"--tp 4 --nnodes 2", "needs --dist-init-addr"},
      {"--tp 4 --nnodes 2 --node-rank 2 --dist-init-addr h:1", "--node-rank 2 is out of range"},
      {"--tp 4 --nnodes 2 --dist-init-addr nohost", "not host:port"},
      {"--tp 0", "--tp-size: 0 is out of range"},
      {"--tp 4 --format yaml", "--format: 'yaml' is not one of: text, json"},
      {"--tp 4 --bogus 1", "unknown flag(s): --bogus"},
  };
  for (auto [flags, want] : cases) {
    auto r = run(flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.err;
    EXPECT_NE(r.err.find(want), std::string::npos) << flags << ": " << r.err;
    EXPECT_EQ(r.err.rfind("loom parallel-layout: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}
