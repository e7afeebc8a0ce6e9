// The reasoning / tool-call parser on Qwen3's own output format, whole and streamed piece by piece
// (a streamed answer must split exactly as the whole one and never show half a tag).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "loom/server/chat_output_parser.h"
#include "loom/server/openai_protocol.h"
#include "tokenizer/tokenizer_fixture.h"

namespace loom::server {
namespace {

// What Qwen3 writes when it thinks, then calls two tools (its chat template's format).
const std::string kQwen3Answer =
    "<think>\nThe user wants the weather in Paris and Tokyo. I should call get_weather twice.\n</think>\n\n"
    "I'll look both up.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
    "\"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n"
    "</tool_call>";

TEST(ChatOutputParser, SplitsQwen3ReasoningContentAndToolCalls) {
  bool called = false;
  const ChatDelta d = parse_chat_output(kQwen3Answer, true, true, &called);
  EXPECT_TRUE(called);
  EXPECT_EQ(d.reasoning, "\nThe user wants the weather in Paris and Tokyo. I should call get_weather twice.\n");
  EXPECT_EQ(d.content, "I'll look both up.\n\n");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(d.tool_calls[0].arguments), (nlohmann::json{{"city", "Paris"}, {"unit", "celsius"}}));
  EXPECT_EQ(nlohmann::json::parse(d.tool_calls[1].arguments), (nlohmann::json{{"city", "Tokyo"}}));
  EXPECT_EQ(d.tool_calls[0].index, 0);
  EXPECT_EQ(d.tool_calls[1].index, 1);
  EXPECT_EQ(d.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_NE(d.tool_calls[0].id, d.tool_calls[1].id);
}

TEST(ChatOutputParser, StreamedPiecesSplitExactlyAsTheWhole) {
  bool called = false;
  const ChatDelta whole = parse_chat_output(kQwen3Answer, true, true, &called);
  for (size_t step : {1, 2, 3, 5, 7, 11}) {
    ChatOutputParser p(true, true);
    ChatDelta got;
    std::vector<ParsedToolCall> calls;  // assembled from the fragments, as a client does
    size_t fragments = 0;
    for (size_t at = 0; at < kQwen3Answer.size(); at += step) {
      ChatDelta d = p.push(kQwen3Answer.substr(at, step));
      for (const std::string& piece : {d.reasoning, d.content})  // never half a tag on the wire
        for (const char* tag : {"<think", "</think", "<tool_call", "</tool_call", "<tool", "</"})
          EXPECT_EQ(piece.find(tag), std::string::npos) << "step " << step << ": '" << piece << "'";
      got.reasoning += d.reasoning;
      got.content += d.content;
      for (auto& c : d.tool_calls) {
        ++fragments;
        if (!c.continuation) {
          ASSERT_EQ(c.index, static_cast<int>(calls.size())) << "step " << step;
          EXPECT_EQ(c.id.rfind("call_", 0), 0u);
          calls.push_back(c);
        } else {
          ASSERT_FALSE(calls.empty());
          ASSERT_EQ(c.index, calls.back().index);
          EXPECT_EQ(c.arguments.find("</"), std::string::npos) << c.arguments;
          calls.back().arguments += c.arguments;
        }
      }
    }
    const ChatDelta end = p.finish();
    EXPECT_TRUE(end.tool_calls.empty());
    got.content += end.content;
    got.reasoning += end.reasoning;
    EXPECT_EQ(got.reasoning, whole.reasoning) << "step " << step;
    EXPECT_EQ(got.content, whole.content) << "step " << step;
    ASSERT_EQ(calls.size(), 2u) << "step " << step;
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(calls[i].name, "get_weather");
      EXPECT_EQ(nlohmann::json::parse(calls[i].arguments), nlohmann::json::parse(whole.tool_calls[i].arguments))
          << "step " << step << ": " << calls[i].arguments;
    }
    // Streamed as written: small pieces give several argument fragments per call.
    if (step <= 3) EXPECT_GT(fragments, 6u) << "step " << step;
    EXPECT_TRUE(p.saw_tool_call());
  }
}

// The header (id, name) goes out as soon as the arguments start, before the call is complete.
TEST(ChatOutputParser, ToolCallHeaderStreamsBeforeTheCallEnds) {
  ChatOutputParser p(false, true);
  EXPECT_TRUE(p.push("<tool_call>\n{\"name\": \"get_").tool_calls.empty());
  ChatDelta d = p.push("weather\", \"arguments\": {\"ci");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_FALSE(d.tool_calls[0].continuation);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[1].arguments, "{\"ci");
  d = p.push("ty\": \"Paris\"}}");  // the braces may still close the call: held back
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].arguments, "ty\": \"Paris\"");
  d = p.push("\n</tool_call>");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].arguments, "}");
  // A string-valued "arguments" is not streamed raw: it comes decoded, whole, at the end.
  ChatOutputParser q(false, true);
  ChatDelta e = q.push("<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>");
  ASSERT_EQ(e.tool_calls.size(), 1u);
  EXPECT_EQ(e.tool_calls[0].arguments, "{\"a\": 1}");
}

TEST(ChatOutputParser, WhatIsNotACallStaysContent) {
  bool called = true;
  // Not JSON, a JSON without a name, and a call cut off by max_tokens.
  const std::string text = "a <tool_call>not json</tool_call> b <tool_call>{\"x\": 1}</tool_call> c <tool_call>{\"name\"";
  const ChatDelta d = parse_chat_output(text, true, true, &called);
  EXPECT_FALSE(called);
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, text);
  // A literal '<' that starts no tag is held only until it is known not to.
  ChatOutputParser p(true, true);
  EXPECT_EQ(p.push("x < y and <t").content, "x < y and ");
  EXPECT_EQ(p.push("able>").content, "<table>");
}

TEST(ChatOutputParser, ParsersOffPassTextThrough) {
  bool called = true;
  const ChatDelta d = parse_chat_output(kQwen3Answer, false, false, &called);
  EXPECT_FALSE(called);
  EXPECT_EQ(d.content, kQwen3Answer);
  EXPECT_TRUE(d.reasoning.empty());
  // Reasoning only: the tool calls stay in the content.
  const ChatDelta r = parse_chat_output(kQwen3Answer, true, false, &called);
  EXPECT_FALSE(called);
  EXPECT_NE(r.content.find("<tool_call>"), std::string::npos);
  EXPECT_FALSE(r.reasoning.empty());
  EXPECT_TRUE(known_tool_call_parser("qwen3") && known_tool_call_parser("hermes") && !known_tool_call_parser("x"));
  EXPECT_TRUE(known_reasoning_parser("qwen3") && !known_reasoning_parser("deepseek"));
}

// Thinking-only templates open `<think>` in the prompt; the model then writes only `</think>`.
TEST(ChatOutputParser, AThoughtOpenedByThePromptIsReasoning) {
  const std::string answer = "The user greets me.\n</think>\n\nHello!";
  bool called = false;
  const ChatDelta open = parse_chat_output(answer, true, false, &called, /*in_reasoning=*/true);
  EXPECT_EQ(open.reasoning, "The user greets me.\n");
  EXPECT_EQ(open.content, "Hello!");
  const ChatDelta closed = parse_chat_output(answer, true, false, &called);
  EXPECT_EQ(closed.content, answer);  // without the prompt's <think>, nothing marks a thought
  ChatOutputParser streamed(true, false, true);
  std::string reasoning, content;
  for (char c : answer) {
    const ChatDelta d = streamed.push(std::string(1, c));
    reasoning += d.reasoning;
    content += d.content;
  }
  content += streamed.finish().content;
  EXPECT_EQ(reasoning, open.reasoning);
  EXPECT_EQ(content, open.content);

  // The server sees it in the rendered prompt: the Qwen3 template with `<think>\n` appended.
  std::ifstream tj_in(tokenizer::testing::qwen3_dir() + "/tokenizer.json");
  std::ifstream cfg_in(tokenizer::testing::qwen3_dir() + "/tokenizer_config.json");
  const nlohmann::json tj = nlohmann::json::parse(tj_in);
  nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(cfg_in);
  cfg["chat_template"] = cfg["chat_template"].get<std::string>() + "{%- if add_generation_prompt %}<think>\n{%- endif %}";
  const auto thinking_only = tokenizer::Tokenizer::from_json(tj, cfg);
  ProtocolContext ctx;
  ctx.limits.vocab_size = 151936;
  ctx.limits.context_length = 4096;
  ctx.limits.kv_capacity = 4096;
  ctx.served_model_name = "m";
  ctx.reasoning_parser = "qwen3";
  const std::string body = R"({"messages": [{"role": "user", "content": "hi"}]})";
  ctx.tokenizer = &thinking_only;
  EXPECT_TRUE(parse_request(Endpoint::chat, body, ctx).reasoning_open);
  ctx.tokenizer = &tokenizer::testing::qwen3();
  EXPECT_FALSE(parse_request(Endpoint::chat, body, ctx).reasoning_open);
}

}  // namespace
}  // namespace loom::server
