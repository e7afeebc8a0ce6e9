// Structured outputs through the server (issue 17): response_format json_object / json_schema,
// the regex and ebnf extensions and forced tool calls produce conforming text even from the
// random-weight fixture; bad constraints are a 400 naming the field; the n choices of a prompt
// prefill it once.
#include <gtest/gtest.h>

#include <regex>

#include "server_harness.h"

namespace loom::server::testing {
namespace {

using nlohmann::json;

json chat(json extra) {
  json b = {{"messages", {{{"role", "user"}, {"content", "Describe a person."}}}}, {"max_tokens", 160}};
  b.update(extra);
  return b;
}

json person_schema() {
  return {{"type", "object"},
          {"properties",
           {{"name", {{"type", "string"}, {"maxLength", 6}}},
            {"age", {{"type", "integer"}, {"minimum", 0}, {"maximum", 120}}},
            {"role", {{"enum", {"admin", "user"}}}}}},
          {"required", {"name", "age", "role"}}};
}

void expect_400(const HttpResponse& r, const std::string& param) {
  ASSERT_EQ(r.status, 400) << r.body;
  const json e = json::parse(r.body)["error"];
  EXPECT_EQ(e["param"], param) << r.body;
  EXPECT_EQ(e["type"], "invalid_request_error");
}

TEST(ServerStructuredOutput, JsonSchemaOutputConformsStreamedOrNot) {
  ServerHarness h;
  const json rf = {{"type", "json_schema"}, {"json_schema", {{"name", "person"}, {"schema", person_schema()}}}};
  for (int i = 0; i < 6; ++i) {
    json b = chat({{"response_format", rf}, {"seed", i}, {"temperature", 1.0}});
    std::string text;
    if (i % 2) {
      const Streamed s = stream(h.port(), "/v1/chat/completions", b);
      ASSERT_TRUE(s.done) << s.body;
      for (const auto& data : sse_data(s.body)) {
        if (data == "[DONE]") continue;
        const json j = json::parse(data);
        if (!j["choices"].empty() && j["choices"][0]["delta"].contains("content"))
          text += j["choices"][0]["delta"]["content"].get<std::string>();
      }
    } else {
      const auto r = post(h.port(), "/v1/chat/completions", b);
      ASSERT_EQ(r.status, 200) << r.body;
      const json j = json::parse(r.body);
      EXPECT_EQ(j["choices"][0]["finish_reason"], "stop") << r.body;
      text = j["choices"][0]["message"]["content"];
    }
    const json v = json::parse(text, nullptr, false);
    ASSERT_FALSE(v.is_discarded()) << "not JSON: " << text;
    ASSERT_TRUE(v.is_object()) << text;
    EXPECT_EQ(v.size(), 3u) << text;  // strict: no property beyond the schema's
    ASSERT_TRUE(v["name"].is_string()) << text;
    EXPECT_LE(v["name"].get<std::string>().size(), 6u * 4) << text;  // 6 characters, UTF-8
    ASSERT_TRUE(v["age"].is_number_integer()) << text;
    EXPECT_GE(v["age"].get<int64_t>(), 0);
    EXPECT_LE(v["age"].get<int64_t>(), 120);
    EXPECT_TRUE(v["role"] == "admin" || v["role"] == "user") << text;
  }
}

TEST(ServerStructuredOutput, JsonObjectRegexAndEbnf) {
  ServerHarness h;
  // json_object: whatever the model writes is one JSON object (a short schema-free one may not end
  // within max_tokens from random weights, so only finished answers are parsed).
  int parsed = 0;
  for (int i = 0; i < 4; ++i) {
    const auto r = post(h.port(), "/v1/chat/completions",
                        chat({{"response_format", {{"type", "json_object"}}}, {"seed", i}, {"max_tokens", 250}}));
    ASSERT_EQ(r.status, 200) << r.body;
    const json c = json::parse(r.body)["choices"][0];
    const std::string text = c["message"]["content"];
    ASSERT_EQ(text.find_first_not_of(" \t\r\n"), text.find('{')) << text;
    if (c["finish_reason"] == "stop") {
      EXPECT_TRUE(json::parse(text, nullptr, false).is_object()) << text;
      ++parsed;
    }
  }
  const auto re = post(h.port(), "/v1/completions",
                       {{"prompt", "Answer:"}, {"max_tokens", 20}, {"regex", "(yes|no), [0-9]{3}"}, {"seed", 1}});
  ASSERT_EQ(re.status, 200) << re.body;
  const std::string re_text = json::parse(re.body)["choices"][0]["text"];
  EXPECT_TRUE(std::regex_match(re_text, std::regex("(yes|no), [0-9]{3}"))) << re_text;
  const auto g = post(h.port(), "/v1/completions",
                      {{"prompt", "Pick:"}, {"max_tokens", 20}, {"ebnf", "root ::= \"A\" | \"B\" [0-9]"}});
  ASSERT_EQ(g.status, 200) << g.body;
  const std::string g_text = json::parse(g.body)["choices"][0]["text"];
  EXPECT_TRUE(std::regex_match(g_text, std::regex("A|B[0-9]"))) << g_text;
  // response_format text is no constraint at all.
  EXPECT_EQ(post(h.port(), "/v1/chat/completions", chat({{"response_format", {{"type", "text"}}}, {"max_tokens", 4}})).status, 200);
}

TEST(ServerStructuredOutput, BadConstraintsAreA400) {
  ServerHarness h;
  auto schema_rf = [](json schema) {
    return json{{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", schema}}}};
  };
  expect_400(post(h.port(), "/v1/chat/completions",
                  chat({{"response_format", schema_rf({{"type", "integer"}, {"minimum", 5}, {"maximum", 1}})}})),
             "response_format");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"response_format", schema_rf(json::array({1}))}})), "response_format");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"response_format", {{"type", "xml"}}}})), "response_format");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"response_format", "json"}})), "response_format");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"response_format", {{"type", "json_schema"}}}})), "response_format");
  expect_400(post(h.port(), "/v1/completions", {{"prompt", "x"}, {"regex", "(("}}), "regex");
  expect_400(post(h.port(), "/v1/completions", {{"prompt", "x"}, {"regex", 5}}), "regex");
  expect_400(post(h.port(), "/v1/completions", {{"prompt", "x"}, {"ebnf", "root ::= nope"}}), "ebnf");
  expect_400(post(h.port(), "/v1/completions", {{"prompt", "x"}, {"regex", "a"}, {"ebnf", "root ::= \"a\""}}), "ebnf");
  expect_400(post(h.port(), "/v1/completions", {{"prompt", "x"}, {"regex", std::string(70000, 'a')}}), "regex");
  // The server still answers afterwards.
  EXPECT_EQ(post(h.port(), "/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}}).status, 200);
}

// n choices: the prompt is prefilled once; the other choices read its pages from the prefix cache.
TEST(ServerStructuredOutput, ChoicesShareOnePrefill) {
  ServerHarness h;
  std::string prompt = "A prompt long enough to fill several pages of the KV cache:";
  for (int i = 0; i < 12; ++i) prompt += " word" + std::to_string(i);
  const auto r = post(h.port(), "/v1/completions",
                      {{"prompt", prompt}, {"max_tokens", 4}, {"n", 3}, {"seed", 3}, {"temperature", 1.0}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  ASSERT_EQ(j["choices"].size(), 3u);
  const int64_t prompt_tokens = j["usage"]["prompt_tokens"];
  ASSERT_GT(prompt_tokens, 32);
  const std::string metrics = http(h.port(), "GET", "/metrics").body;
  const std::string name = "\nloom_prefix_cache_hit_tokens_total{";
  const size_t at = metrics.find(name);
  ASSERT_NE(at, std::string::npos) << metrics;
  const uint64_t hits = std::stoull(metrics.substr(metrics.find("} ", at) + 2));
  EXPECT_EQ(hits, 2u * static_cast<uint64_t>((prompt_tokens - 1) / 16 * 16));  // two choices, whole pages
}

// best_of > n: every candidate is generated (and counted in usage); the n returned are those with
// the highest mean logprob per token, without logprobs unless asked for.
TEST(ServerStructuredOutput, BestOfReturnsTheMostLikelyCandidates) {
  ServerHarness h;
  const json base = {{"prompt", "Once upon a time"}, {"max_tokens", 6}, {"seed", 11}, {"temperature", 1.0}};
  json all = base;
  all.update({{"n", 4}, {"logprobs", 0}});
  const auto ra = post(h.port(), "/v1/completions", all);
  ASSERT_EQ(ra.status, 200) << ra.body;
  std::vector<std::pair<double, std::string>> ranked;  // (mean logprob, text) of the 4 candidates
  const json candidates = json::parse(ra.body)["choices"];
  for (const auto& c : candidates) {
    double s = 0;
    for (const auto& v : c["logprobs"]["token_logprobs"]) s += v.get<double>();
    ranked.emplace_back(s / 6, c["text"]);
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](auto& a, auto& b) { return a.first > b.first; });

  json best = base;
  best.update({{"n", 2}, {"best_of", 4}});
  const auto rb = post(h.port(), "/v1/completions", best);
  ASSERT_EQ(rb.status, 200) << rb.body;
  const json j = json::parse(rb.body);
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4 * 6);  // all four were generated
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_TRUE(j["choices"][i]["logprobs"].is_null());
    EXPECT_EQ(j["choices"][i]["text"], ranked[static_cast<size_t>(i)].second) << "choice " << i;
  }
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"best_of", 2}})), "best_of");
}

}  // namespace
}  // namespace loom::server::testing
