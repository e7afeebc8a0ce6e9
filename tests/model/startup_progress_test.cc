// Start-up progress (RunnerOptions::progress): one report per decoder layer loaded, ending at the
// layer count, from one rank even when several load.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/runtime/model_runner.h"
#include "model/reference.h"

namespace loom {
namespace {

struct Report {
  std::string stage;
  int64_t done, total;
};

std::vector<Report> load_with_progress(int tp) {
  std::vector<Report> reports;
  runtime::RunnerOptions o;
  o.model_path = testing::model_dir("tiny-qwen3-moe");
  o.max_total_tokens = 256;
  o.parallel.tp = tp;
  o.progress = [&](const char* stage, int64_t done, int64_t total) { reports.push_back({stage, done, total}); };
  auto runner = runtime::create_runner(o);
  EXPECT_GT(runner->config().num_hidden_layers, 0);
  for (size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].stage, "loading weights");
    EXPECT_EQ(reports[i].done, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(reports[i].total, runner->config().num_hidden_layers);
  }
  EXPECT_EQ(static_cast<int64_t>(reports.size()), runner->config().num_hidden_layers);
  return reports;
}

TEST(StartupProgress, OneReportPerLayerLoaded) { load_with_progress(1); }
TEST(StartupProgress, OnlyRankZeroReportsInAParallelRun) { load_with_progress(2); }

}  // namespace
}  // namespace loom
