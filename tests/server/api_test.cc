// The OpenAI endpoints over real HTTP: response shapes, streaming, usage, logprobs, stop tokens,
// sampling reproducibility, and greedy decoding equal to the runtime's reference greedy loop.
#include <gtest/gtest.h>

#include <set>

#include "loom/runtime/generate.h"
#include "server_harness.h"

namespace loom::server::testing {
namespace {

using json = nlohmann::json;

TEST(ServerApi, CompletionHasOpenAIShapeAndUsage) {
  ServerHarness h;
  auto r = post(h.port(), "/v1/completions", {{"model", kModelName}, {"prompt", "The capital of France is"},
                                              {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = r.json();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], kModelName);
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(j["choices"][0]["text"].get<std::string>().empty());
  const auto prompt_ids = tokenizer::testing::qwen3().encode("The capital of France is");
  EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_ids.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], 6);
  EXPECT_EQ(j["usage"]["total_tokens"], prompt_ids.size() + 6);
}

TEST(ServerApi, StreamedChatMatchesNonStreamedAndEndsWithDone) {
  ServerHarness h;
  json body = {{"messages", {{{"role", "system"}, {"content", "You are terse."}}, {{"role", "user"}, {"content", "Hi!"}}}},
               {"max_tokens", 10}, {"temperature", 0}, {"ignore_eos", true},
               {"stream_options", {{"include_usage", true}}}};
  auto full = post(h.port(), "/v1/chat/completions", body);
  ASSERT_EQ(full.status, 200) << full.body;
  auto j = full.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");

  Streamed s = stream(h.port(), "/v1/chat/completions", body);
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.body.substr(s.body.size() - 14), "data: [DONE]\n\n");
  EXPECT_EQ(s.text, answer_text(j));
  EXPECT_EQ(s.finish_reason, "length");
  EXPECT_EQ(s.usage["completion_tokens"], 10);
  EXPECT_EQ(s.usage["prompt_tokens"], j["usage"]["prompt_tokens"]);
  // The first chunk carries the assistant role.
  auto first = json::parse(sse_data(s.body).front());
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
}

TEST(ServerApi, TemperatureZeroEqualsReferenceGreedyDecoding) {
  const std::vector<int32_t> prompt = {785, 6722, 315, 9625, 374};
  auto runner = tiny_runner(1024, 16);
  const auto expected = runtime::generate_greedy(*runner, prompt, 12);

  ServerHarness h;
  for (json extra : {json{{"temperature", 0}}, json{{"temperature", 0}, {"top_k", 5}, {"top_p", 0.5}, {"seed", 3}}}) {
    json body = {{"prompt", prompt}, {"max_tokens", 12}, {"ignore_eos", true}, {"logprobs", 0}};
    body.update(extra);
    auto r = post(h.port(), "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.json();
    const auto& lp = j["choices"][0]["logprobs"];
    ASSERT_EQ(lp["tokens"].size(), expected.size());
    EXPECT_EQ(answer_text(r.json()), tokenizer::testing::qwen3().decode(expected, true)) << body.dump();
  }
}

TEST(ServerApi, SeededSamplingIsReproducible) {
  ServerHarness h;
  auto sample = [&](int seed) {
    auto r = post(h.port(), "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 12}, {"temperature", 1.0},
                                                {"seed", seed}, {"ignore_eos", true}, {"logprobs", 0}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json()["choices"][0]["logprobs"]["tokens"].dump();
  };
  const std::string a = sample(7);
  EXPECT_EQ(sample(7), a);
  std::set<std::string> distinct = {a, sample(8), sample(9), sample(10)};
  EXPECT_GT(distinct.size(), 1u) << "different seeds should draw different tokens";
}

TEST(ServerApi, LogprobsListTheTopTokensAndTheGreedyChoiceIsTheBest) {
  ServerHarness h;
  auto r = post(h.port(), "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "Count to three."}}}},
                                                   {"max_tokens", 4}, {"temperature", 0}, {"ignore_eos", true},
                                                   {"logprobs", true}, {"top_logprobs", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.json();
  const auto& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u);
  for (const auto& t : content) {
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    EXPECT_EQ(t["logprob"], t["top_logprobs"][0]["logprob"]);
    EXPECT_EQ(t["token"], t["top_logprobs"][0]["token"]);
    EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(), t["top_logprobs"][2]["logprob"].get<double>());
  }
}

// logit_bias shifts the token's logit before selection: +100 makes greedy decoding pick it every
// step; -100 on the greedy token makes it pick another.
TEST(ServerApi, LogitBiasSteersTheChoice) {
  ServerHarness h;
  const std::vector<int32_t> prompt = {9707, 11, 1879, 0};
  const auto greedy = runtime::generate_greedy(*tiny_runner(256, 16), prompt, 4);
  json body = {{"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 0}};
  const auto ids_of = [](const json& j) {
    std::vector<std::string> t;
    for (const auto& s : j["choices"][0]["logprobs"]["tokens"]) t.push_back(s.get<std::string>());
    return t;
  };
  body["logit_bias"] = {{"42", 100}};
  auto forced = post(h.port(), "/v1/completions", body);
  ASSERT_EQ(forced.status, 200) << forced.body;
  const std::string tok42 = tokenizer::testing::qwen3().decode({42}, false);
  for (const auto& t : ids_of(forced.json())) EXPECT_EQ(t, tok42);
  body["logit_bias"] = {{std::to_string(greedy[0]), -100}};
  auto avoided = post(h.port(), "/v1/completions", body);
  ASSERT_EQ(avoided.status, 200) << avoided.body;
  EXPECT_NE(ids_of(avoided.json())[0], tokenizer::testing::qwen3().decode({greedy[0]}, false));
  for (const json& bad : {json{{"x", 1}}, json{{"5", 101}}, json{{"-1", 1}}, json{{"999999999", 1}}, json{{"5", "up"}},
                          json::array({1})}) {
    body["logit_bias"] = bad;
    auto r = post(h.port(), "/v1/completions", body);
    EXPECT_EQ(r.status, 400) << bad.dump() << " " << r.body;
    EXPECT_EQ(r.json()["error"]["param"], "logit_bias") << r.body;
  }
}

// echo: the prompt's text leads the completion, streamed or not; chat and echo with logprobs are 400s.
TEST(ServerApi, EchoLeadsWithThePrompt) {
  ServerHarness h;
  json body = {{"prompt", "The capital of France is"}, {"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}};
  const std::string plain = answer_text(post(h.port(), "/v1/completions", body).json());
  body["echo"] = true;
  auto echoed = post(h.port(), "/v1/completions", body);
  ASSERT_EQ(echoed.status, 200) << echoed.body;
  EXPECT_EQ(answer_text(echoed.json()), "The capital of France is" + plain);
  EXPECT_EQ(echoed.json()["usage"]["completion_tokens"], 5);
  const Streamed streamed = stream(h.port(), "/v1/completions", body);
  EXPECT_EQ(streamed.text, "The capital of France is" + plain);
  body["logprobs"] = 1;
  auto with_logprobs = post(h.port(), "/v1/completions", body);
  EXPECT_EQ(with_logprobs.status, 400);
  EXPECT_EQ(with_logprobs.json()["error"]["param"], "echo");
  auto chat = post(h.port(), "/v1/chat/completions",
                   {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"echo", true}});
  EXPECT_EQ(chat.status, 400);
  EXPECT_EQ(chat.json()["error"]["param"], "echo");
  // A token id the tokenizer cannot print (found by fuzzing: it escaped as a non-API exception).
  auto bad_ids = post(h.port(), "/v1/completions", {{"prompt", {733331, 2, 3}}, {"echo", true}, {"max_tokens", 2}});
  EXPECT_EQ(bad_ids.status, 400) << bad_ids.body;
  EXPECT_EQ(bad_ids.json()["error"]["param"], "prompt");
}

// n choices: each its own request (seed + i when seeded), returned as choices[i] with index i; the
// prompt counts once in the usage. Streamed, every chunk names its choice and one [DONE] ends all.
TEST(ServerApi, NChoicesEachWithItsOwnSeed) {
  ServerHarness h;
  json body = {{"prompt", "Once upon a time"}, {"max_tokens", 6}, {"temperature", 1.0}, {"seed", 5},
               {"ignore_eos", true}};
  std::vector<std::string> single;
  for (int i = 0; i < 3; ++i) {
    json one = body;
    one["seed"] = 5 + i;
    single.push_back(answer_text(post(h.port(), "/v1/completions", one).json()));
  }
  body["n"] = 3;
  auto r = post(h.port(), "/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.json();
  ASSERT_EQ(j["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(j["choices"][i]["text"], single[i]) << "choice " << i;
    EXPECT_EQ(j["choices"][i]["finish_reason"], "length");
  }
  EXPECT_EQ(j["usage"]["completion_tokens"], 18);
  const int64_t prompt_tokens = j["usage"]["prompt_tokens"];
  EXPECT_EQ(j["usage"]["total_tokens"], prompt_tokens + 18);

  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  const HttpResponse streamed = post(h.port(), "/v1/completions", body);
  ASSERT_EQ(streamed.status, 200);
  std::vector<std::string> texts(3);
  int done = 0;
  json usage;
  for (const auto& data : sse_data(streamed.body)) {
    if (data == "[DONE]") {
      ++done;
      continue;
    }
    const json c = json::parse(data);
    if (c.contains("usage") && !c["usage"].is_null()) usage = c["usage"];
    for (const auto& ch : c["choices"]) texts[ch["index"].get<int>()] += ch["text"].get<std::string>();
  }
  EXPECT_EQ(done, 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(texts[i], single[i]) << "streamed choice " << i;
  EXPECT_EQ(usage["completion_tokens"], 18);
  EXPECT_EQ(usage["prompt_tokens"], prompt_tokens);
}

TEST(ServerApi, StopTokenIdEndsWithFinishReasonStop) {
  ServerHarness h;
  const std::vector<int32_t> prompt = {9707, 11, 1879, 0};
  json body = {{"prompt", prompt}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}, {"logprobs", 0}};
  auto free_run = post(h.port(), "/v1/completions", body).json();
  ASSERT_EQ(free_run["usage"]["completion_tokens"], 8);
  // Stop on the third generated token: the answer ends at its first occurrence, without it.
  const auto ids = runtime::generate_greedy(*tiny_runner(256, 16), prompt, 8);
  const int32_t stop_id = ids[2];
  const auto first = std::find(ids.begin(), ids.end(), stop_id) - ids.begin();
  body["stop_token_ids"] = {stop_id};
  auto r = post(h.port(), "/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(r.json()["usage"]["completion_tokens"], first + 1);
  EXPECT_EQ(answer_text(r.json()),
            tokenizer::testing::qwen3().decode(std::vector<int32_t>(ids.begin(), ids.begin() + first), true));
}

TEST(ServerApi, StopStringIsCutFromTheText) {
  ServerHarness h;
  json body = {{"prompt", "Hello there"}, {"max_tokens", 10}, {"temperature", 0}, {"ignore_eos", true}};
  const std::string text = answer_text(post(h.port(), "/v1/completions", body).json());
  // A one-letter ASCII stop string past the start (multi-byte text must not be cut in half).
  size_t at = 1;
  while (at < text.size() && !std::isalpha(static_cast<unsigned char>(text[at]))) ++at;
  ASSERT_LT(at, text.size()) << "no ASCII letter in " << text;
  const std::string stop = text.substr(at, 1);
  body["stop"] = stop;
  auto r = post(h.port(), "/v1/completions", body).json();
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(answer_text(r), text.substr(0, text.find(stop)));
}

TEST(ServerApi, ModelsHealthAndMetrics) {
  ServerHarness h;
  auto models = http(h.port(), "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.json()["data"][0]["id"], kModelName);
  auto health = http(h.port(), "GET", "/health");
  EXPECT_EQ(health.status, 200);
  ASSERT_EQ(post(h.port(), "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 3}}).status, 200);
  auto metrics = http(h.port(), "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* name : {"loom_num_requests_waiting", "loom_num_requests_running", "loom_kv_usage_ratio",
                           "loom_time_to_first_token_seconds_bucket", "loom_inter_token_latency_seconds_count",
                           "loom_prefix_cache_hit_tokens_total", "loom_generation_tokens_total"})
    EXPECT_NE(metrics.body.find(name), std::string::npos) << name;
  EXPECT_NE(metrics.body.find("loom_time_to_first_token_seconds_count{model_name=\"tiny-moe\"} 1"), std::string::npos)
      << metrics.body;
}

TEST(ServerApi, ApiKeyIsRequiredEverywhereButHealth) {
  HarnessOptions o;
  o.api_key = "sekret";
  ServerHarness h(o);
  EXPECT_EQ(http(h.port(), "GET", "/health").status, 200);
  for (const char* path : {"/v1/models", "/metrics"}) {
    auto r = http(h.port(), "GET", path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.json()["error"]["code"], "invalid_api_key");
  }
  const std::string body = json{{"prompt", "Hi"}, {"max_tokens", 2}}.dump();
  EXPECT_EQ(http(h.port(), "POST", "/v1/completions", body, "Authorization: Bearer wrong\r\n").status, 401);
  EXPECT_EQ(http(h.port(), "POST", "/v1/completions", body, "Authorization: Bearer sekret\r\n").status, 200);
  EXPECT_EQ(http(h.port(), "GET", "/v1/models", "", "Authorization: Bearer sekret\r\n").status, 200);
}

}  // namespace
}  // namespace loom::server::testing
