// Every parallel configuration of the matrix on every Qwen3 / Qwen3-MoE / Mixtral checkpoint: logits within
// 1e-4 (relative to their scale) of the single-rank run at every position and of transformers
// where reference.json has the prompt, and 12 greedy tokens identical.
// Where the checkpoint makes a configuration impossible, starting it must fail with one clear line.
#include <gtest/gtest.h>

#include <map>

#include "loom/model/causal_lm.h"
#include "loom/runtime/generate.h"
#include "model/reference.h"
#include "parallel_model/matrix.h"

using namespace loom;
using loom::testing::model_dir;

namespace {

constexpr double kParallelTolerance = 1e-4;
constexpr double kReferenceTolerance = 1e-4;
constexpr int kGreedyTokens = 12;
constexpr int64_t kAllPositionsMaxVocab = 4096;  // all-position logits only where the vocabulary is small

struct Expected {
  std::vector<int32_t> prompt;
  std::vector<float> logits;  // [positions, V] (or the last row only)
  std::vector<int32_t> greedy;
  const nlohmann::json* reference = nullptr;  // the reference.json case of this prompt, if any
};

runtime::RunnerOptions options(const std::string& dir) {
  runtime::RunnerOptions o;
  o.model_path = dir;
  o.max_total_tokens = 1024;
  return o;
}

// The prompt of each length: reference.json's where it has one, else ids spread over the vocabulary.
std::vector<int32_t> prompt_of(int n, int64_t vocab, const nlohmann::json& ref) {
  for (const auto& c : ref["cases"])
    if (static_cast<int>(c["prompt_ids"].size()) == n) return c["prompt_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return p;
}

struct Fixture {
  nlohmann::json reference;
  bool all_positions = false;
  std::vector<Expected> cases;
};

// The single-rank answers, computed once per checkpoint.
const Fixture& single_rank(const std::string& name) {
  static std::map<std::string, Fixture> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Fixture& f = cache[name];
  const std::string dir = model_dir(name);
  f.reference = loom::testing::load_reference(dir);
  auto runner = runtime::create_runner(options(dir));
  const int64_t vocab = runner->config().vocab_size;
  f.all_positions = vocab <= kAllPositionsMaxVocab;
  for (int n : loom::testing::prompt_lengths()) {
    Expected e;
    e.prompt = prompt_of(n, vocab, f.reference);
    e.logits = runtime::prompt_logits(*runner, e.prompt, f.all_positions).to_float_vector();
    e.greedy = runtime::generate_greedy(*runner, e.prompt, kGreedyTokens);
    f.cases.push_back(std::move(e));
  }
  for (size_t i = 0; i < f.cases.size(); ++i)
    for (const auto& c : f.reference["cases"])
      if (c["prompt_ids"].get<std::vector<int32_t>>() == f.cases[i].prompt) f.cases[i].reference = &c;
  return f;
}

std::vector<float> row(const std::vector<float>& flat, int64_t v, int64_t r) {
  return std::vector<float>(flat.begin() + r * v, flat.begin() + (r + 1) * v);
}

using Param = std::tuple<loom::testing::ParallelCase, std::string>;

void expect_equal_to_one_rank(const loom::testing::ParallelCase& pc, const std::string& name,
                              const std::string& dist_backend) {
  const std::string dir = model_dir(name);
  runtime::RunnerOptions o = options(dir);
  o.parallel = pc.config();
  o.moe_dispatch = pc.dispatch;
  o.dist_backend = dist_backend;

  std::string impossible;
  try {
    model::check_parallel_fit(io::ModelConfig::load(dir), o.parallel);
  } catch (const InvalidArgument& e) {
    impossible = e.what();
  }
  if (!impossible.empty()) {  // the checkpoint rules this configuration out: it must fail at start
    try {
      runtime::create_runner(o);
      ADD_FAILURE() << "expected the start to fail: " << impossible;
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(std::string(e.what()), impossible);
      EXPECT_EQ(impossible.find('\n'), std::string::npos);
    }
    return;  // the rejection is this configuration's whole check
  }

  const Fixture& f = single_rank(name);
  auto runner = runtime::create_runner(o);
  const int64_t v = runner->config().vocab_size;
  for (const Expected& e : f.cases) {
    SCOPED_TRACE(pc.name + " on " + name + ", prompt of " + std::to_string(e.prompt.size()) + " tokens");
    const std::vector<float> got = runtime::prompt_logits(*runner, e.prompt, f.all_positions).to_float_vector();
    ASSERT_EQ(got.size(), e.logits.size());
    const int64_t rows = static_cast<int64_t>(got.size()) / v;
    for (int64_t r = 0; r < rows; ++r)
      ASSERT_LT(loom::testing::scaled_error(row(got, v, r), row(e.logits, v, r)), kParallelTolerance) << "row " << r;
    if (e.reference) {
      EXPECT_LT(loom::testing::reference_error(row(got, v, rows - 1), *e.reference), kReferenceTolerance);
      if (f.all_positions && e.reference->contains("all_logits"))
        for (int64_t r = 0; r < rows; ++r)
          EXPECT_LT(loom::testing::scaled_error(row(got, v, r), (*e.reference)["all_logits"][r].get<std::vector<float>>()),
                    kReferenceTolerance)
              << "position " << r;
    }
    EXPECT_EQ(runtime::generate_greedy(*runner, e.prompt, kGreedyTokens), e.greedy);
  }
  EXPECT_EQ(runner->kv_pool().num_free(), runner->kv_pool().num_pages()) << "pages leaked";
}

class EqualToOneRank : public ::testing::TestWithParam<Param> {};

TEST_P(EqualToOneRank, LogitsAndGreedyTokens) {
  const auto& [pc, name] = GetParam();
  expect_equal_to_one_rank(pc, name, "auto");
}

// Every layout again with the ranks' CPU communicators on host copies instead of Gloo.
class EqualToOneRankOverHostCopy : public ::testing::TestWithParam<Param> {};

TEST_P(EqualToOneRankOverHostCopy, LogitsAndGreedyTokens) {
  const auto& [pc, name] = GetParam();
  expect_equal_to_one_rank(pc, name, "host-copy");
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  std::string n = std::get<0>(info.param).name + "_" + std::get<1>(info.param);
  for (auto& ch : n)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Matrix, EqualToOneRank,
                         ::testing::Combine(::testing::ValuesIn(loom::testing::parallel_cases()),
                                            ::testing::ValuesIn(loom::testing::decoder_checkpoints())),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Matrix, EqualToOneRankOverHostCopy,
                         ::testing::Combine(::testing::ValuesIn(loom::testing::parallel_cases()),
                                            ::testing::Values("tiny-qwen3-moe")),
                         param_name);

}  // namespace
