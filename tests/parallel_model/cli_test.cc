// `loom logits` / `loom generate` with the parallel flags: one command runs the ranks as threads,
// answers like one rank, and an impossible combination for the model fails at start with exit
// code 2 and one line naming the numbers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/run_command.h"
#include "model/reference.h"

using loom::testing::run_loom;

namespace {

const std::string kMoe = "--model-path " + loom::testing::model_dir("tiny-qwen3-moe");
const std::string kPrompt = " --prompt-ids 5,17,300,42,7,99,1000,3,64 ";

std::vector<float> logits_of(const std::string& out) {
  return nlohmann::json::parse(out)["logits"].get<std::vector<float>>();
}

TEST(ParallelCli, LogitsEqualOneRankForEveryFlag) {
  const auto one = run_loom("logits " + kMoe + kPrompt);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  for (const std::string flags :
       {"--tp 2", "--tp-size 4 --ep-size 2 --moe-dp-size 2", "--tp-size 4 --ep-size 2 --moe-cp-size 2",
        "--tp 4 --attn-cp-size 2 --enable-prefill-context-parallel",
        "--tp 4 --attn-cp-size 2 --ep-size 2 --moe-dp-size 2 --enable-prefill-context-parallel",
        "--tp 2 --enable-dp-attention --dp-size 2 --ep-size 2",
        "--tp 4 --attn-cp-size 2 --ep-size 2 --enable-prefill-context-parallel --dist-backend host-copy"}) {
    SCOPED_TRACE(flags);
    const auto par = run_loom("logits " + kMoe + kPrompt + "--device cpu " + flags);
    ASSERT_EQ(par.exit_code, 0) << par.err;
    EXPECT_LT(loom::testing::scaled_error(logits_of(par.out), logits_of(one.out)), 1e-4);
  }
}

TEST(ParallelCli, GenerateEqualsOneRank) {
  const auto one = run_loom("generate " + kMoe + kPrompt + "--max-new-tokens 12");
  const auto par = run_loom("generate " + kMoe + kPrompt +
                            "--max-new-tokens 12 --tp 4 --attn-cp-size 2 --ep-size 2 --enable-prefill-context-parallel");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(par.exit_code, 0) << par.err;
  EXPECT_EQ(par.out, one.out);
}

TEST(ParallelCli, ReportCommPrintsBytesPerRankAndOp) {
  const auto r = run_loom("logits " + kMoe + kPrompt + "--tp 2 --ep-size 2 --report-comm");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<int> ranks;
  std::istringstream lines(r.err);
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    ranks.insert(j["rank"].get<int>());
    EXPECT_GT(j["calls"].get<int>(), 0);
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1}));
}

TEST(ParallelCli, ImpossibleCombinationsFailAtStartWithOneLine) {
  struct Case {
    std::string model, flags, says;
  };
  const std::vector<Case> cases = {
      {"variants/qwen3-moe-mqa-e5", "--tp 2 --ep-size 2", "--ep-size 2 does not divide the model's 5 experts"},
      {"variants/qwen3-dense-h6-d24", "--tp 4", "attention TP 4 does not divide the model's 6 attention heads"},
      {"variants/qwen3-dense-h6-d24", "--tp 2",
       "attention TP 2 and the model's 3 key/value heads: one must divide the other"},
      {"tiny-qwen3-moe", "--tp 8", "attention TP 8 does not divide the model's 4 attention heads"},
      {"tiny-qwen3-moe", "--tp 4 --attn-cp-size 2 --enable-dp-attention --dp-size 2",
       "context parallelism inside attention-DP replicas is not supported"},
  };
  for (const auto& c : cases) {
    for (const std::string cmd : {"logits", "generate"}) {
      SCOPED_TRACE(cmd + " " + c.model + " " + c.flags);
      const auto r = run_loom(cmd + " --model-path " + loom::testing::model_dir(c.model) + " --prompt-ids 1,2 " + c.flags);
      EXPECT_EQ(r.exit_code, 2);
      EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
      EXPECT_EQ(loom::testing::count_lines(r.err), 1) << r.err;
      EXPECT_TRUE(r.out.empty());
    }
  }
}

TEST(ParallelCli, BackendAndAliasMistakesFailWithOneLine) {
  const std::pair<std::string, std::string> cases[] = {
      {"--tp 4 --ep-size 2 --moe-dp-size 2 --moe-cp-size 2", "--moe-cp-size is the older name of --moe-dp-size"},
      {"--tp 2 --dist-backend mpi", "--dist-backend: unknown 'mpi' (allowed: auto, nccl, device-copy, host-copy)"},
      {"--tp 2 --dist-backend nccl", "--dist-backend nccl is for --device cuda"},
      {"--tp 2 --device cuda --dist-backend host-copy", "--dist-backend host-copy is for --device cpu"},
  };
  for (const auto& [flags, says] : cases) {
    SCOPED_TRACE(flags);
    const auto r = run_loom("logits " + kMoe + kPrompt + flags);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(loom::testing::count_lines(r.err), 1) << r.err;
  }
  const auto serve = run_loom("serve " + kMoe + " --tp 2 --report-comm");
  EXPECT_EQ(serve.exit_code, 2);
  EXPECT_NE(serve.err.find("--report-comm is for loom logits/generate"), std::string::npos) << serve.err;
}

// More CUDA ranks than visible GPUs (CI has none) is one line naming both numbers and the way out.
TEST(ParallelCli, MoreCudaRanksThanGpusFailsNamingBoth) {
  const auto r = run_loom("generate " + kMoe + kPrompt + "--max-new-tokens 1 --device cuda --tp 4 --ep-size 4");
  if (r.exit_code == 0) GTEST_SKIP() << "this machine has 4 GPUs";
  EXPECT_EQ(r.exit_code, 2) << r.err;
  if (r.err.find("built without the CUDA backend") != std::string::npos) GTEST_SKIP() << r.err;
  EXPECT_NE(r.err.find("4 ranks on this node need 4 GPUs"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" are visible; --dist-backend device-copy runs every rank on one GPU"), std::string::npos)
      << r.err;
  EXPECT_EQ(loom::testing::count_lines(r.err), 1) << r.err;
}

}  // namespace
