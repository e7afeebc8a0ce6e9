// `loom logits` / `loom generate` end to end, and every bad input the foundation must reject
// with one clear line and a non-zero exit (never a crash).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/run_command.h"

namespace fs = std::filesystem;
using loom::testing::count_lines;
using loom::testing::run_loom;

namespace {

const std::string kData = LOOM_TEST_DATA;
const std::string kMoe = kData + "/models/tiny-qwen3-moe";

nlohmann::json reference(const std::string& dir) {
  std::ifstream f(dir + "/reference.json");
  return nlohmann::json::parse(f);
}

std::string join(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

// A scratch copy of a fixture that a test may damage.
std::string scratch_copy(const std::string& name) {
  const fs::path dst = fs::path(::testing::TempDir()) / ("loom_" + name + "_" + std::to_string(::getpid()) + "_" +
                                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dst);
  fs::copy(kData + "/models/" + name, dst, fs::copy_options::recursive);
  for (auto& e : fs::directory_iterator(dst)) fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dst.string();
}

void expect_one_line_error(const loom::testing::CommandResult& r, int code, const std::vector<std::string>& words) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  for (const auto& w : words) EXPECT_NE(r.err.find(w), std::string::npos) << "missing '" << w << "' in: " << r.err;
}

TEST(LogitsCommand, PrintsLastAndAllPositionLogits) {
  const auto c = reference(kMoe)["cases"][1];
  const auto prompt = c["prompt_ids"].get<std::vector<int>>();
  auto r = run_loom("logits --model-path " + kMoe + " --prompt-ids " + join(prompt));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto last = nlohmann::json::parse(r.out)["logits"].get<std::vector<float>>();
  const auto ref = c["last_logits"].get<std::vector<float>>();
  ASSERT_EQ(last.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(last[i], ref[i], 2e-3) << i;

  r = run_loom("logits --model-path " + kMoe + " --prompt-ids " + join(prompt) + " --all-positions");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto all = nlohmann::json::parse(r.out)["logits"];
  ASSERT_EQ(all.size(), prompt.size());
  EXPECT_EQ(all[0].size(), ref.size());
}

TEST(GenerateCommand, PrintsTheGreedyContinuation) {
  for (const std::string name : {"tiny-qwen3", "tiny-qwen3-moe"}) {
    const auto c = reference(kData + "/models/" + name)["cases"][2];
    auto r = run_loom("generate --model-path " + kData + "/models/" + name + " --prompt-ids " +
                      join(c["prompt_ids"].get<std::vector<int>>()) + " --max-new-tokens 12");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["output_ids"], c["greedy_ids"]) << name;
  }
}

TEST(ModelCommandErrors, MissingDirectory) {
  expect_one_line_error(run_loom("logits --model-path /nonexistent/model --prompt-ids 1"), 2,
                        {"--model-path", "/nonexistent/model"});
}

TEST(ModelCommandErrors, DirectoryWithoutConfig) {
  const std::string dir = ::testing::TempDir() + "/loom_empty_model";
  fs::create_directories(dir);
  expect_one_line_error(run_loom("logits --model-path " + dir + " --prompt-ids 1"), 2, {"config.json"});
}

TEST(ModelCommandErrors, UnsupportedArchitectureNamesTheSupportedOnes) {
  const std::string dir = scratch_copy("tiny-qwen3-moe");
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["architectures"] = {"FalconForCausalLM"};
  std::ofstream(dir + "/config.json") << cfg.dump();
  expect_one_line_error(run_loom("logits --model-path " + dir + " --prompt-ids 1"), 2,
                        {"FalconForCausalLM", "Qwen3MoeForCausalLM", "Qwen3ForCausalLM", "MixtralForCausalLM"});
}

TEST(ModelCommandErrors, TruncatedSafetensorsNamesTheFile) {
  const std::string dir = scratch_copy("tiny-qwen3-moe");
  fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") / 2);
  expect_one_line_error(run_loom("logits --model-path " + dir + " --prompt-ids 1"), 1, {"model.safetensors"});
}

TEST(ModelCommandErrors, CorruptHeaderNamesTheFile) {
  const std::string dir = scratch_copy("tiny-qwen3-moe");
  {
    std::fstream f(dir + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(12);
    f.write("#####", 5);  // inside the JSON header
  }
  expect_one_line_error(run_loom("logits --model-path " + dir + " --prompt-ids 1"), 1, {"model.safetensors"});
}

TEST(ModelCommandErrors, ShapeMismatchNamesTheTensor) {
  const std::string dir = scratch_copy("tiny-qwen3-moe");
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["moe_intermediate_size"] = 40;
  std::ofstream(dir + "/config.json") << cfg.dump();
  expect_one_line_error(run_loom("logits --model-path " + dir + " --prompt-ids 1"), 1,
                        {"model.layers.0.mlp.experts.0.gate_proj.weight", "[40, 64]", "[32, 64]"});
}

TEST(ModelCommandErrors, MissingTensorIsNamed) {
  const std::string dir = scratch_copy("tiny-qwen3-moe");
  auto cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["num_hidden_layers"] = 3;  // the checkpoint has two
  std::ofstream(dir + "/config.json") << cfg.dump();
  expect_one_line_error(run_loom("logits --model-path " + dir + " --prompt-ids 1"), 1,
                        {"model.layers.2.", "not found"});
}

TEST(ModelCommandErrors, PromptIdOutsideTheVocabulary) {
  expect_one_line_error(run_loom("logits --model-path " + kMoe + " --prompt-ids 1,2048"), 2, {"2048", "vocabulary"});
  expect_one_line_error(run_loom("generate --model-path " + kMoe + " --prompt-ids -1 --max-new-tokens 2"), 2,
                        {"-1"});
}

TEST(ModelCommandErrors, EmptyOrMalformedPrompt) {
  expect_one_line_error(run_loom("logits --model-path " + kMoe + " --prompt-ids ''"), 2, {"--prompt-ids"});
  expect_one_line_error(run_loom("logits --model-path " + kMoe), 2, {"--prompt-ids"});
  expect_one_line_error(run_loom("logits --model-path " + kMoe + " --prompt-ids 1,,2"), 2, {"--prompt-ids"});
  expect_one_line_error(run_loom("logits --model-path " + kMoe + " --prompt-ids 1,x"), 2, {"--prompt-ids", "x"});
}

TEST(ModelCommandErrors, BadFlags) {
  expect_one_line_error(run_loom("logits --model-path " + kMoe + " --prompt-ids 1 --device tpu"), 2,
                        {"--device", "cpu", "cuda"});
  expect_one_line_error(run_loom("logits --model-path " + kMoe + " --prompt-ids 1 --dtype f8"), 2,
                        {"--dtype", "f32"});
  expect_one_line_error(run_loom("logits --model-path " + kMoe + " --prompt-ids 1 --bogus 3"), 2, {"--bogus"});
  expect_one_line_error(run_loom("generate --model-path " + kMoe + " --prompt-ids 1 --max-new-tokens -3"), 2,
                        {"--max-new-tokens"});
  expect_one_line_error(run_loom("generate --model-path " + kMoe + " --prompt-ids 1 --max-new-tokens 5000"), 2,
                        {"context length", "4096"});
  expect_one_line_error(
      run_loom("generate --model-path " + kMoe + " --prompt-ids 1 --piecewise-cuda-graph-max-tokens 0"), 2,
      {"--piecewise-cuda-graph-max-tokens", "[1, 65536]"});
  expect_one_line_error(
      run_loom("generate --model-path " + kMoe + " --prompt-ids 1 --piecewise-cuda-graph-max-tokens many"), 2,
      {"--piecewise-cuda-graph-max-tokens", "not an integer"});
}

}  // namespace
