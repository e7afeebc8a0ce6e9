// Scheduler behaviour on the toy runner: batching, chunked prefill, retraction and prefix reuse
// must never change what a greedy request generates, and every page comes back.
#include <gtest/gtest.h>

#include <map>

#include "loom/engine/scheduler.h"
#include "loom/grammar/constraint.h"
#include "tokenizer/tokenizer_fixture.h"
#include "scheduler_test_util.h"
#include "toy_runner.h"

namespace loom::engine {
namespace {

using namespace testing;  // Collected, greedy_request, prompt_of, run_to_idle, ToyRunner

// Each prompt alone, one request at a time, on a roomy pool without prefix caching.
std::map<uint64_t, Collected> solo(const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens) {
  std::map<uint64_t, Collected> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ToyRunner runner(256, 4);
    SchedulerOptions o;
    o.disable_radix_cache = true;
    Scheduler s(runner, tokenizer::testing::qwen3(), o);
    s.add(i, greedy_request(prompts[i], max_tokens, &out, i));
    run_to_idle(s);
  }
  return out;
}

TEST(Scheduler, ContinuousBatchingMatchesOneAtATime) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 12; ++i) prompts.push_back(prompt_of(i, 3 + i * 5));
  const auto expected = solo(prompts, 20);

  ToyRunner runner(512, 4);
  SchedulerOptions o;
  o.max_running_requests = 5;
  o.chunked_prefill_size = 16;
  Scheduler s(runner, tokenizer::testing::qwen3(), o);
  std::map<uint64_t, Collected> got;
  // Half now, half while the first ones are decoding: they must join the running batch.
  for (size_t i = 0; i < 6; ++i) s.add(i, greedy_request(prompts[i], 20, &got, i));
  for (int k = 0; k < 6; ++k) s.step();
  for (size_t i = 6; i < prompts.size(); ++i) s.add(i, greedy_request(prompts[i], 20, &got, i));
  run_to_idle(s);

  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i].ids, expected.at(i).ids) << "request " << i;
    EXPECT_EQ(got[i].reason, FinishReason::length);
    EXPECT_EQ(got[i].ids.size(), 20u);
  }
  // Limits held in every step; no step mixed a prefill chunk with decodes (decode steps keep the
  // shape of a CUDA graph), and while requests decoded no two prefill steps ran back to back.
  int decode_steps = 0, prefills_since_decode = 0;
  for (const auto& b : runner.batches) {
    EXPECT_LE(static_cast<int64_t>(b.seqs.size()), 5);
    int64_t prefill = 0;
    bool decode = false;
    for (const auto& q : b.seqs) {
      if (q.tokens.size() > 1 || q.start_pos == 0) prefill += static_cast<int64_t>(q.tokens.size());
      else decode = true;
    }
    EXPECT_LE(prefill, 16);
    EXPECT_FALSE(decode && prefill > 0) << "a mixed step";
    if (decode) {
      EXPECT_LE(prefills_since_decode, 1) << "decoders waited for two prefill steps";
      prefills_since_decode = 0;
      ++decode_steps;
    } else {
      ++prefills_since_decode;
    }
  }
  EXPECT_GT(decode_steps, 19);
}

TEST(Scheduler, ChunkedPrefillSplitsLongPrompts) {
  const auto prompt = prompt_of(7, 50);
  const auto expected = solo({prompt}, 8);
  ToyRunner runner(256, 4);
  SchedulerOptions o;
  o.chunked_prefill_size = 7;
  Scheduler s(runner, tokenizer::testing::qwen3(), o);
  std::map<uint64_t, Collected> got;
  s.add(0, greedy_request(prompt, 8, &got, 0));
  run_to_idle(s);
  EXPECT_EQ(got[0].ids, expected.at(0).ids);
  ASSERT_GE(runner.batches.size(), 8u);  // ceil(50 / 7) = 8 chunks, then decodes
  for (int i = 0; i < 7; ++i) EXPECT_EQ(runner.batches[i].seqs[0].tokens.size(), 7u);
  EXPECT_EQ(runner.batches[7].seqs[0].tokens.size(), 1u);
  EXPECT_EQ(runner.batches[7].seqs[0].start_pos, 49);
}

// While nothing decodes a prefill step may take max_prefill_tokens; once requests decode, chunks
// shrink to chunked_prefill_size so that they wait at most one short step.
TEST(Scheduler, PrefillBudgetIsLargeOnlyWhileNothingDecodes) {
  const auto first = prompt_of(3, 60), second = prompt_of(4, 60);
  const auto expected_first = solo({first}, 40), expected_second = solo({second}, 6);
  ToyRunner runner(256, 4);
  SchedulerOptions o;
  o.chunked_prefill_size = 8;
  o.max_prefill_tokens = 64;
  Scheduler s(runner, tokenizer::testing::qwen3(), o);
  std::map<uint64_t, Collected> got;
  s.add(0, greedy_request(first, 40, &got, 0));  // decodes for longer than the second prefills
  s.step();
  ASSERT_EQ(runner.batches.size(), 1u);
  EXPECT_EQ(runner.batches[0].seqs[0].tokens.size(), 60u) << "a lone prompt prefills in one step";
  s.add(1, greedy_request(second, 6, &got, 1));
  run_to_idle(s);
  EXPECT_EQ(got[0].ids, expected_first.at(0).ids);
  EXPECT_EQ(got[1].ids, expected_second.at(0).ids);
  size_t max_chunk_while_decoding = 0;
  for (size_t i = 1; i < runner.batches.size(); ++i)
    for (const auto& q : runner.batches[i].seqs)
      if (q.tokens.size() > 1) max_chunk_while_decoding = std::max(max_chunk_while_decoding, q.tokens.size());
  EXPECT_EQ(max_chunk_while_decoding, 8u) << "the second prompt is chunked while the first decodes";
}

TEST(Scheduler, SmallPoolRetractsAndResumesWithIdenticalOutput) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(prompt_of(i + 40, 10 + i));
  const auto expected = solo(prompts, 30);
  for (bool radix : {true, false}) {
    // 24 pages of 4 tokens: each request needs up to ~12 pages, so 8 at once cannot fit.
    ToyRunner runner(24, 4);
    SchedulerOptions o;
    o.max_running_requests = 8;
    o.disable_radix_cache = !radix;
    Scheduler s(runner, tokenizer::testing::qwen3(), o);
    std::map<uint64_t, Collected> got;
    for (size_t i = 0; i < prompts.size(); ++i) s.add(i, greedy_request(prompts[i], 30, &got, i));
    run_to_idle(s);
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i].ids, expected.at(i).ids) << "request " << i;
    EXPECT_GT(s.stats().retractions, 0u) << "the pool was meant to run out (radix " << radix << ")";
  }
}

TEST(Scheduler, SharedPrefixReusesCachedPages) {
  const auto system = prompt_of(99, 40);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 5; ++i) {
    auto p = system;
    for (int j = 0; j < 3 + i; ++j) p.push_back(1000 + i * 10 + j);
    prompts.push_back(p);
  }
  const auto expected = solo(prompts, 6);
  ToyRunner runner(256, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), SchedulerOptions{});
  std::map<uint64_t, Collected> got;
  s.add(0, greedy_request(prompts[0], 6, &got, 0));
  run_to_idle(s);
  EXPECT_GT(s.cache().cached_pages(), 0);
  for (size_t i = 1; i < prompts.size(); ++i) s.add(i, greedy_request(prompts[i], 6, &got, i));
  run_to_idle(s);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i].ids, expected.at(i).ids) << "request " << i;
  EXPECT_EQ(got[0].cached, 0);
  for (size_t i = 1; i < prompts.size(); ++i) EXPECT_EQ(got[i].cached, 40) << "request " << i;
  EXPECT_EQ(s.stats().prefix_cache_hit_tokens, 4u * 40u);
  // The cached prefix is not recomputed: the second request's first step starts at position 40.
  bool started_at_40 = false;
  for (const auto& b : runner.batches)
    for (const auto& q : b.seqs) started_at_40 |= q.start_pos == 40 && q.tokens.size() > 1;
  EXPECT_TRUE(started_at_40);
}

TEST(Scheduler, EvictionMakesRoomWhenCacheFillsThePool) {
  ToyRunner runner(16, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), SchedulerOptions{});
  std::map<uint64_t, Collected> got;
  for (uint64_t i = 0; i < 10; ++i) {  // each leaves ~5 pages cached; 16 pages in all
    s.add(i, greedy_request(prompt_of(static_cast<int>(i) + 500, 20), 4, &got, i));
    run_to_idle(s);
    EXPECT_EQ(got[i].ids.size(), 4u);
  }
  EXPECT_LE(s.cache().cached_pages(), 16);
}

TEST(Scheduler, AbortFreesPagesAtOnce) {
  ToyRunner runner(64, 4);
  SchedulerOptions o;
  o.disable_radix_cache = true;
  Scheduler s(runner, tokenizer::testing::qwen3(), o);
  std::map<uint64_t, Collected> got;
  s.add(1, greedy_request(prompt_of(1, 30), 100, &got, 1));
  s.add(2, greedy_request(prompt_of(2, 30), 100, &got, 2));
  for (int i = 0; i < 5; ++i) s.step();
  EXPECT_LT(runner.kv_pool().num_free(), 64);
  s.abort(1);
  s.abort(2);
  s.abort(12345);  // unknown: ignored
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(runner.kv_pool().num_free(), 64);
  EXPECT_EQ(got[1].reason, FinishReason::abort);
  EXPECT_EQ(got[2].reason, FinishReason::abort);
  EXPECT_EQ(s.idle_leak_report(), "");
}

TEST(Scheduler, StopTokenAndStopStringEndTheRequest) {
  const auto prompt = prompt_of(3, 12);
  const auto expected = solo({prompt}, 10).at(0);
  ToyRunner runner(64, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), SchedulerOptions{});
  std::map<uint64_t, Collected> got;
  auto r = greedy_request(prompt, 10, &got, 0);
  r.params.stop_token_ids = {expected.ids[3]};
  s.add(0, std::move(r));
  run_to_idle(s);
  EXPECT_EQ(got[0].reason, FinishReason::stop);
  ASSERT_GE(got[0].ids.size(), 1u);
  EXPECT_EQ(got[0].ids.back(), expected.ids[3]);  // the stop token is counted, not printed

  // A stop string taken from the middle of the expected text.
  const std::string& text = expected.text;
  ASSERT_GT(text.size(), 6u);
  const std::string stop = text.substr(text.size() / 2, 3);
  auto r2 = greedy_request(prompt, 10, &got, 1);
  r2.params.stop = {stop};
  s.add(1, std::move(r2));
  run_to_idle(s);
  EXPECT_EQ(got[1].reason, FinishReason::stop);
  EXPECT_EQ(got[1].text, text.substr(0, text.find(stop)));
}

// The n choices of one prompt (one prefix_group): the first prefills it, the others wait for it
// and take its full pages from the prefix cache; outputs are unchanged.
TEST(Scheduler, ChoicesOfOnePromptPrefillItOnce) {
  const auto prompt = prompt_of(5, 41);
  const auto expected = solo({prompt}, 5).at(0);
  ToyRunner runner(256, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), SchedulerOptions{});
  std::map<uint64_t, Collected> got;
  for (uint64_t i = 0; i < 3; ++i) {
    auto r = greedy_request(prompt, 5, &got, i);
    r.prefix_group = 9;
    s.add(i, std::move(r));
  }
  run_to_idle(s);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(got[i].ids, expected.ids) << "choice " << i;
  EXPECT_EQ(got[0].cached, 0);
  EXPECT_EQ(got[1].cached, 40);
  EXPECT_EQ(got[2].cached, 40);
  int64_t prompt_positions = 0;  // positions computed by prefill steps
  for (const auto& b : runner.batches)
    for (const auto& q : b.seqs)
      if (q.tokens.size() > 1) prompt_positions += static_cast<int64_t>(q.tokens.size());
  EXPECT_EQ(prompt_positions, 41);  // the other two compute only the last prompt token

  // Without the group the three are admitted together and each prefills the whole prompt.
  ToyRunner runner2(256, 4);
  Scheduler s2(runner2, tokenizer::testing::qwen3(), SchedulerOptions{});
  std::map<uint64_t, Collected> got2;
  for (uint64_t i = 0; i < 3; ++i) s2.add(i, greedy_request(prompt, 5, &got2, i));
  run_to_idle(s2);
  EXPECT_EQ(got2[1].cached, 0);
}

// A constrained request only ever draws what its grammar allows, and the grammar's end ends it.
TEST(Scheduler, GrammarConstrainsTheOutputAndEndsIt) {
  ToyRunner runner(256, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), SchedulerOptions{});
  grammar::Compiler compiler(tokenizer::testing::qwen3(), ToyRunner::kVocab, s.limits().eos_token_ids);
  std::map<uint64_t, Collected> got;
  for (uint64_t i = 0; i < 4; ++i) {
    auto r = greedy_request(prompt_of(static_cast<int>(i), 9), 40, &got, i);
    r.params.temperature = i % 2 ? 1.0 : 0.0;
    r.params.seed = i;
    r.params.constraint = compiler.regex("(yes|no): [0-9]{2,3}");
    s.add(i, std::move(r));
  }
  run_to_idle(s);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(got[i].reason, FinishReason::stop) << i;
    const std::string& t = got[i].text;
    EXPECT_TRUE(t.rfind("yes: ", 0) == 0 || t.rfind("no: ", 0) == 0) << t;
    const std::string digits = t.substr(t.find(": ") + 2);
    EXPECT_TRUE(digits.size() >= 2 && digits.size() <= 3 &&
                digits.find_first_not_of("0123456789") == std::string::npos) << t;
  }
}

TEST(Scheduler, RunnerFailureEndsTheBatchWithAnErrorAndFreesPages) {
  class Failing final : public runtime::Runner {
   public:
    ToyRunner inner{32, 4};
    const io::ModelConfig& config() const override { return inner.config(); }
    cache::KvPool& kv_pool() override { return inner.kv_pool(); }
    Tensor forward(const model::ForwardBatch&) override { throw Error("device lost"); }
  } runner;
  Scheduler s(runner, tokenizer::testing::qwen3(), SchedulerOptions{});
  std::map<uint64_t, Collected> got;
  s.add(0, greedy_request(prompt_of(1, 9), 5, &got, 0));
  run_to_idle(s);
  EXPECT_EQ(got[0].reason, FinishReason::error);
}

}  // namespace
}  // namespace loom::engine
