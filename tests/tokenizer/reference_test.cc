// Every case of tests/data/tokenizers/qwen3/reference.json (produced by HF tokenizers and
// transformers' apply_chat_template) must come out the same.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_fixture.h"

namespace loom::tokenizer {
namespace {

using testing::qwen3;

nlohmann::ordered_json reference() {
  std::ifstream f(testing::qwen3_dir() + "/reference.json");
  return nlohmann::ordered_json::parse(f);
}

TEST(Qwen3Reference, EncodeAndDecodeEveryCase) {
  const auto ref = reference();
  ASSERT_GE(ref["cases"].size(), 40u);
  for (const auto& c : ref["cases"]) {
    const std::string text = c["text"];
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(qwen3().encode(text), expected) << "text: " << text;
    EXPECT_EQ(qwen3().decode(expected), c["decoded"].get<std::string>()) << "text: " << text;
  }
}

TEST(Qwen3Reference, ChatTemplateEveryCase) {
  const auto ref = reference();
  ASSERT_GE(ref["chat_cases"].size(), 5u);
  for (const auto& c : ref["chat_cases"]) {
    std::optional<bool> thinking;
    if (c.contains("enable_thinking")) thinking = c["enable_thinking"].get<bool>();
    const bool gen = c.value("add_generation_prompt", true);
    const std::string text = qwen3().apply_chat_template(c["messages"], nlohmann::ordered_json(), gen, thinking);
    EXPECT_EQ(text, c["rendered"].get<std::string>()) << c["messages"].dump();
    EXPECT_EQ(qwen3().encode(text), c["ids"].get<std::vector<int32_t>>()) << c["messages"].dump();
  }
}

TEST(Qwen3Reference, VocabularyFacts) {
  const Tokenizer& tok = qwen3();
  EXPECT_EQ(tok.vocab_size(), 151669);
  EXPECT_EQ(tok.eos_token_id(), std::optional<int32_t>(151645));  // <|im_end|>
  EXPECT_EQ(tok.token_id("<|im_start|>"), std::optional<int32_t>(151644));
  EXPECT_EQ(tok.token_id("<think>"), std::optional<int32_t>(151667));
  EXPECT_EQ(tok.token_id("Hello"), std::optional<int32_t>(9707));
  EXPECT_EQ(tok.token_id("Ġworld"), std::optional<int32_t>(1879));  // vocab spelling of " world"
  EXPECT_FALSE(tok.token_id("no-such-token-xyz").has_value());
  EXPECT_TRUE(tok.is_special(151645));
  EXPECT_FALSE(tok.is_special(151667));  // <think> is added but not special
  EXPECT_FALSE(tok.is_special(9707));
  EXPECT_TRUE(tok.has_chat_template());
}

}  // namespace
}  // namespace loom::tokenizer
