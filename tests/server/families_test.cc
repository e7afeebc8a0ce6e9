// `loom serve` on every model family's fixture (the Qwen3 tokenizer standing in, through a
// real-vocabulary copy of the fixture): greedy completions equal the runtime's greedy loop, and a
// chat answers the same streamed and not. LOOM_TEST_DEVICE=cuda runs the same on the GPU, where
// only the shapes are compared: these random-weight models' top-2 logits are often within bf16's
// noise (margins near 0.001 of scale), so a prefix-cache hit or another batch size may pick the
// other token, and the fp32 CPU run is the one whose text must match exactly.
#include <gtest/gtest.h>

#include <cstdlib>

#include "loom/runtime/generate.h"
#include "model/reference.h"
#include "real_vocab_checkpoint.h"
#include "server_harness.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;

Device test_device() {
  const char* d = std::getenv("LOOM_TEST_DEVICE");
  return d && std::string(d) == "cuda" ? Device::cuda(0) : Device::cpu();
}

class FamilyServing : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyServing, GreedyCompletionAndChatStreamedAndNot) {
  const std::string dir = real_vocab_copy(loom::testing::model_dir(GetParam()));
  const std::vector<int32_t> prompt = {785, 6722, 315, 9625, 374, 1};
  const auto expected = runtime::generate_greedy(*tiny_runner(1024, 16, 1, dir, test_device()), prompt, 10);

  HarnessOptions o;
  o.model_dir = dir;
  o.device = test_device();
  o.max_total_tokens = 4096;
  ServerHarness h(o);
  auto r = post(h.port(), "/v1/completions",
                {{"prompt", prompt}, {"max_tokens", 10}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  const bool exact = !test_device().is_cuda();
  EXPECT_EQ(r.json()["choices"][0]["logprobs"]["tokens"].size(), expected.size());
  if (exact) EXPECT_EQ(answer_text(r.json()), tokenizer::testing::qwen3().decode(expected, true));

  json body = {{"messages", {{{"role", "system"}, {"content", "You are terse."}}, {{"role", "user"}, {"content", "Hi!"}}}},
               {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true},
               {"stream_options", {{"include_usage", true}}}};
  auto full = post(h.port(), "/v1/chat/completions", body);
  ASSERT_EQ(full.status, 200) << full.body;
  const json j = full.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  Streamed s = stream(h.port(), "/v1/chat/completions", body);
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_TRUE(s.done);
  if (exact) EXPECT_EQ(s.text, answer_text(j));
  EXPECT_EQ(s.finish_reason, "length");
  EXPECT_EQ(s.usage["completion_tokens"], 12);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FamilyServing, ::testing::Values("tiny-mixtral", "tiny-gpt-oss", "tiny-deepseek-v2"),
                         [](const auto& info) { return loom::testing::checkpoint_test_name(info.param); });

}  // namespace
}  // namespace loom::server::testing
