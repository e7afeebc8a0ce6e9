// Grammar-constrained decoding (grammar/constraint.h) with the real Qwen3 vocabulary: text that
// follows the grammar is allowed token by token by the masks and ends on a stop token; text that
// breaks it is masked out; bad grammars are InvalidConstraint with xgrammar's reason.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "loom/grammar/constraint.h"
#include "tokenizer/tokenizer_fixture.h"

namespace loom::grammar {
namespace {

constexpr int64_t kModelVocab = 151936;  // Qwen3's logits are wider than its tokenizer
constexpr int32_t kImEnd = 151645;

Compiler& compiler() {
  static Compiler c(tokenizer::testing::qwen3(), kModelVocab, {kImEnd, 151643});
  return c;
}

bool allowed(const std::vector<uint32_t>& mask, int32_t t) { return (mask[t / 32] >> (t % 32)) & 1u; }

// Walks `text`'s tokens through a fresh matcher: each must be allowed by the mask and accepted.
// Returns how many were; then whether the stop token is allowed and ends the grammar.
struct Walk {
  size_t accepted = 0, tokens = 0;
  bool stop_allowed = false, terminated = false;
};
Walk walk(const std::shared_ptr<const Constraint>& c, const std::string& text) {
  Matcher m(c);
  std::vector<uint32_t> mask(static_cast<size_t>(mask_words(kModelVocab)));
  const auto ids = tokenizer::testing::qwen3().encode(text);
  Walk w;
  w.tokens = ids.size();
  for (int32_t id : ids) {
    m.fill_mask(mask.data());
    if (!allowed(mask, id) || !m.accept(id)) return w;
    ++w.accepted;
  }
  m.fill_mask(mask.data());
  w.stop_allowed = allowed(mask, kImEnd);
  if (w.stop_allowed) w.terminated = m.accept(kImEnd) && m.terminated();
  return w;
}

TEST(Grammar, JsonSchemaAllowsConformingTextAndEndsOnTheStopToken) {
  const std::string schema =
      R"({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
          "required": ["city", "days"]})";
  auto c = compiler().json_schema(schema);
  const Walk good = walk(c, R"({"city": "Paris", "days": 3})");
  EXPECT_EQ(good.accepted, good.tokens);
  EXPECT_TRUE(good.stop_allowed);
  EXPECT_TRUE(good.terminated);
  // Missing a required property, a wrong type, a trailing field: rejected before the end.
  for (const char* bad : {R"({"city": "Paris"})", R"({"city": 5, "days": 3})", R"({"city": "P", "days": 0.5})"}) {
    const Walk w = walk(c, bad);
    EXPECT_TRUE(w.accepted < w.tokens || !w.stop_allowed) << bad;
  }
}

TEST(Grammar, JsonObjectRegexAndEbnf) {
  const Walk obj = walk(compiler().json_object(), R"({"a": [1, 2, {"b": null}]})");
  EXPECT_EQ(obj.accepted, obj.tokens);
  EXPECT_TRUE(obj.terminated);
  const Walk arr = walk(compiler().json_object(), "[1, 2]");  // an object is required
  EXPECT_LT(arr.accepted, arr.tokens);

  const Walk re = walk(compiler().regex("(yes|no), [0-9]{3}"), "no, 042");
  EXPECT_EQ(re.accepted, re.tokens);
  EXPECT_TRUE(re.terminated);
  const Walk re_bad = walk(compiler().regex("(yes|no), [0-9]{3}"), "no, 04x");
  EXPECT_LT(re_bad.accepted, re_bad.tokens);

  const Walk g = walk(compiler().ebnf(R"(root ::= "ab" [0-9]+ | "c")"), "ab12");
  EXPECT_EQ(g.accepted, g.tokens);
  EXPECT_TRUE(g.terminated);
}

// The real Qwen3 tool-call text, as the model writes it.
TEST(Grammar, ForcedToolCallAcceptsQwen3ToolCallText) {
  const std::string params =
      R"({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]})";
  auto c = compiler().tool_call({{"get_weather", params}, {"get_time", ""}});
  const Walk w = walk(c, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>");
  EXPECT_EQ(w.accepted, w.tokens);
  EXPECT_TRUE(w.terminated);
  const Walk other = walk(c, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>");
  EXPECT_EQ(other.accepted, other.tokens);
  const Walk unknown = walk(c, "<tool_call>\n{\"name\": \"get_news\", \"arguments\": {}}\n</tool_call>");
  EXPECT_LT(unknown.accepted, unknown.tokens);
  const Walk plain = walk(c, "Sure, let me check.");
  EXPECT_EQ(plain.accepted, 0u);
}

TEST(Grammar, BadGrammarsAreInvalidConstraintWithTheReason) {
  try {
    compiler().json_schema(R"({"type": "integer", "minimum": 5, "maximum": 2})");
    FAIL() << "an unsatisfiable schema compiled";
  } catch (const InvalidConstraint& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("minimum"), std::string::npos) << m;
    EXPECT_EQ(m.find(".cc:"), std::string::npos) << "xgrammar's source location leaked: " << m;
  }
  EXPECT_THROW(compiler().json_schema("not json"), InvalidConstraint);
  EXPECT_THROW(compiler().json_schema("[1, 2]"), InvalidConstraint);
  EXPECT_THROW(compiler().regex("(("), InvalidConstraint);
  EXPECT_THROW(compiler().ebnf("root ::= undefined_rule"), InvalidConstraint);
  EXPECT_THROW(compiler().tool_call({{"f", "{not json"}}), InvalidConstraint);
}

TEST(Grammar, StartAfterLeavesReasoningFreeUntilTheMarker) {
  const int32_t think_end = *tokenizer::testing::qwen3().token_id("</think>");
  Matcher m(compiler().regex("[0-9]+"), think_end);
  EXPECT_FALSE(m.active());
  for (int32_t t : tokenizer::testing::qwen3().encode("let me think")) EXPECT_TRUE(m.accept(t));
  EXPECT_FALSE(m.active());
  EXPECT_TRUE(m.accept(think_end));
  ASSERT_TRUE(m.active());
  std::vector<uint32_t> mask(static_cast<size_t>(mask_words(kModelVocab)));
  m.fill_mask(mask.data());
  EXPECT_TRUE(allowed(mask, tokenizer::testing::qwen3().encode("7")[0]));
  EXPECT_FALSE(allowed(mask, tokenizer::testing::qwen3().encode("x")[0]));
}

TEST(Grammar, BatchedMasksEqualOneByOne) {
  auto c = compiler().json_schema(R"({"type": "object", "properties": {"n": {"type": "integer"}}})");
  const auto ids = tokenizer::testing::qwen3().encode(R"({"n": 12345})");
  std::vector<Matcher> ms;
  for (size_t i = 0; i < 6; ++i) {
    ms.emplace_back(c);
    for (size_t k = 0; k < i && k < ids.size(); ++k) ASSERT_TRUE(ms.back().accept(ids[k]));
  }
  const int64_t words = mask_words(kModelVocab);
  std::vector<Matcher*> ptrs;
  for (auto& m : ms) ptrs.push_back(&m);
  std::vector<uint32_t> batched(ms.size() * static_cast<size_t>(words)), single(static_cast<size_t>(words));
  fill_masks(ptrs, batched.data(), kModelVocab);
  for (size_t i = 0; i < ms.size(); ++i) {
    ms[i].fill_mask(single.data());
    EXPECT_TRUE(std::equal(single.begin(), single.end(), batched.begin() + static_cast<int64_t>(i) * words)) << i;
  }
}

}  // namespace
}  // namespace loom::grammar
