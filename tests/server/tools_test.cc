// Tools, tool_choice and the reasoning / tool-call parsers through the server: bad tool input is a
// 400 naming its field; with the parsers on, an answer is split exactly as the parser splits the
// same (greedy) text, streamed or not.
#include <gtest/gtest.h>

#include "server_harness.h"

namespace loom::server::testing {
namespace {

using nlohmann::json;

json weather_tool() {
  json params = {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}, {"required", {"city"}}};
  json fn = {{"name", "get_weather"}, {"description", "Current weather in a city"}, {"parameters", params}};
  return {{"type", "function"}, {"function", fn}};
}

json chat(json extra = json::object()) {
  json b = {{"messages", {{{"role", "user"}, {"content", "What is the weather in Paris?"}}}},
            {"max_tokens", 24},
            {"temperature", 0}};
  b.update(extra);
  return b;
}

void expect_400(const HttpResponse& r, const std::string& param) {
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["param"], param) << r.body;
}

TEST(ServerTools, ToolChoiceAndToolsAreValidated) {
  HarnessOptions o;
  o.tool_call_parser = "qwen3";
  ServerHarness h(o);
  const json tools = json::array({weather_tool()});
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "nope"}}}}}})), "tool_choice");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"tools", tools}, {"tool_choice", "sometimes"}})), "tool_choice");
  json bad_params = weather_tool();
  bad_params["function"]["parameters"] = {{"type", "integer"}, {"minimum", 3}, {"maximum", 1}};
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"tools", {bad_params}}, {"tool_choice", "required"}})), "tools");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"tools", tools}, {"tool_choice", "required"}, {"response_format", {{"type", "json_object"}}}})), "tool_choice");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}})), "tool_choice");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"tools", json::array({{{"type", "function"}}})}})), "tools");
  expect_400(post(h.port(), "/v1/chat/completions", chat({{"tools", {{"name", "x"}}}})), "tools");
  // An assistant turn that only called tools has content null (as OpenAI clients send it).
  json history = chat({{"tools", tools}});
  history["messages"] = {{{"role", "user"}, {"content", "Weather in Paris?"}},
                         {{"role", "assistant"}, {"content", nullptr},
                          {"tool_calls", {{{"id", "call_1"}, {"type", "function"},
                                           {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Paris\"}"}}}}}}},
                         {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "{\"temp_c\": 18}"}}};
  EXPECT_EQ(post(h.port(), "/v1/chat/completions", history).status, 200);
  for (const char* choice : {"auto", "none"}) {
    const auto r = post(h.port(), "/v1/chat/completions", chat({{"tools", tools}, {"tool_choice", choice}}));
    EXPECT_EQ(r.status, 200) << choice << ": " << r.body;
  }
}

// tool_choice "required" or a named function forces one well-formed call (constrained decoding),
// even from random weights, streamed or not.
TEST(ServerTools, ForcedToolCallsAreParsedCalls) {
  HarnessOptions o;
  o.tool_call_parser = "qwen3";
  ServerHarness h(o);
  json city = weather_tool();
  city["function"]["parameters"]["properties"]["city"] = {{"enum", {"Paris", "Tokyo"}}};
  json clock = {{"type", "function"}, {"function", {{"name", "get_time"}, {"parameters", {{"type", "object"}, {"properties", json::object()}}}}}};
  const json tools = json::array({city, clock});
  const json named = {{"type", "function"}, {"function", {{"name", "get_time"}}}};
  for (const json& choice : {json("required"), named}) {
    for (int i = 0; i < 3; ++i) {
      json b = chat({{"tools", tools}, {"tool_choice", choice}, {"max_tokens", 120}, {"seed", i}, {"temperature", 1.0}});
      const auto r = post(h.port(), "/v1/chat/completions", b);
      ASSERT_EQ(r.status, 200) << r.body;
      const json c = json::parse(r.body)["choices"][0];
      EXPECT_EQ(c["finish_reason"], "tool_calls") << r.body;
      ASSERT_EQ(c["message"]["tool_calls"].size(), 1u) << r.body;
      const json fn = c["message"]["tool_calls"][0]["function"];
      const json args = json::parse(fn["arguments"].get<std::string>());
      if (choice.is_object()) EXPECT_EQ(fn["name"], "get_time");
      if (fn["name"] == "get_weather") {
        EXPECT_TRUE(args["city"] == "Paris" || args["city"] == "Tokyo") << args;
      } else {
        EXPECT_EQ(fn["name"], "get_time");
        EXPECT_TRUE(args.is_object());
      }
      // Streamed: the call arrives as delta.tool_calls.
      const Streamed s = stream(h.port(), "/v1/chat/completions", b);
      ASSERT_TRUE(s.done) << s.body;
      EXPECT_NE(s.body.find("\"tool_calls\""), std::string::npos) << s.body;
      EXPECT_NE(s.body.find("\"finish_reason\":\"tool_calls\""), std::string::npos) << s.body;
    }
  }
}

TEST(ServerTools, ParsedAnswersSplitAsTheParserSplitsTheRawText) {
  const json tools = json::array({weather_tool()});
  std::vector<std::string> raw;
  {
    ServerHarness plain;  // no parsers: the raw text
    for (int i = 0; i < 3; ++i) {
      json b = chat({{"tools", tools}, {"seed", i}, {"temperature", i == 0 ? 0.0 : 1.0}});
      const auto r = post(plain.port(), "/v1/chat/completions", b);
      ASSERT_EQ(r.status, 200) << r.body;
      raw.push_back(json::parse(r.body)["choices"][0]["message"]["content"].get<std::string>());
    }
  }
  HarnessOptions o;
  o.tool_call_parser = "qwen3";
  o.reasoning_parser = "qwen3";
  ServerHarness h(o);
  for (int i = 0; i < 3; ++i) {
    json b = chat({{"tools", tools}, {"seed", i}, {"temperature", i == 0 ? 0.0 : 1.0}});
    bool called = false;
    const ChatDelta want = parse_chat_output(raw[i], true, true, &called);
    const auto r = post(h.port(), "/v1/chat/completions", b);
    ASSERT_EQ(r.status, 200) << r.body;
    const json m = json::parse(r.body)["choices"][0]["message"];
    ASSERT_TRUE(m.contains("reasoning_content")) << m;
    EXPECT_EQ(m["reasoning_content"].is_null() ? "" : m["reasoning_content"].get<std::string>(), want.reasoning);
    if (!called) EXPECT_EQ(m["content"], want.content) << m;
    EXPECT_EQ(m.contains("tool_calls"), called) << m;

    // Streamed: the deltas add up to the same split.
    const Streamed s = stream(h.port(), "/v1/chat/completions", b);
    ASSERT_TRUE(s.done) << s.body;
    std::string content, reasoning;
    for (const auto& data : sse_data(s.body)) {
      if (data == "[DONE]") continue;
      const json j = json::parse(data);
      if (j["choices"].empty()) continue;
      const json& d = j["choices"][0]["delta"];
      if (d.contains("content") && d["content"].is_string()) content += d["content"].get<std::string>();
      if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    }
    EXPECT_EQ(content, want.content);
    EXPECT_EQ(reasoning, want.reasoning);
  }
}

}  // namespace
}  // namespace loom::server::testing
