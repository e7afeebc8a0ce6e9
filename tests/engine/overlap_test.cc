// The overlapped decode (SchedulerOptions::overlap) on the toy runner: the next decode step is
// launched before the previous step's tokens are delivered, outputs equal a run without overlap
// (greedy and seeded sampling alike), a stop token costs one wasted step, aborts in flight free
// everything, and requests whose next draw needs their last token wait for it.
#include <gtest/gtest.h>

#include <map>

#include "loom/engine/scheduler.h"
#include "scheduler_test_util.h"
#include "tokenizer/tokenizer_fixture.h"
#include "toy_runner.h"

namespace loom::engine {
namespace {

using namespace testing;  // Collected, greedy_request, prompt_of, run_to_idle, ToyRunner

SchedulerOptions with_overlap(bool on) {
  SchedulerOptions o;
  o.overlap = on;
  o.max_running_requests = 6;
  o.chunked_prefill_size = 16;
  return o;
}

// When each token of one greedy request reaches its callback: the number of steps launched by then.
std::vector<size_t> steps_seen_at_delivery(bool overlap, std::vector<int32_t>* ids, uint64_t* overlapped) {
  ToyRunner runner(64, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), with_overlap(overlap));
  std::vector<size_t> seen;
  Request r;
  r.prompt = prompt_of(1, 6);
  r.params.temperature = 0;
  r.params.max_tokens = 10;
  r.on_output = [&](const RequestOutput& o) {
    for (int32_t t : o.token_ids) {
      ids->push_back(t);
      seen.push_back(runner.batches.size());
    }
  };
  s.add(1, std::move(r));
  run_to_idle(s);
  *overlapped = s.stats().overlapped_steps;
  EXPECT_EQ(runner.batches.size(), 10u) << "a prefill and 9 decode steps, none wasted (the length is known)";
  return seen;
}

TEST(SchedulerOverlap, TheNextDecodeStepIsLaunchedBeforeTheTokensAreDelivered) {
  std::vector<int32_t> plain_ids, overlap_ids;
  uint64_t plain_overlapped = 0, overlapped = 0;
  const auto plain = steps_seen_at_delivery(false, &plain_ids, &plain_overlapped);
  const auto overlap = steps_seen_at_delivery(true, &overlap_ids, &overlapped);
  EXPECT_EQ(overlap_ids, plain_ids);
  ASSERT_EQ(plain.size(), 10u);
  ASSERT_EQ(overlap.size(), 10u);
  for (size_t k = 0; k < 10; ++k) EXPECT_EQ(plain[k], k + 1) << "without overlap, token " << k;
  // The prefill's token comes at once; decode step k + 1's token after step k + 2 was launched,
  // except the last, which no step follows.
  EXPECT_EQ(overlap[0], 1u);
  for (size_t k = 1; k < 9; ++k) EXPECT_EQ(overlap[k], k + 2) << "token " << k;
  EXPECT_EQ(overlap[9], 10u);
  EXPECT_EQ(plain_overlapped, 0u);
  EXPECT_EQ(overlapped, 8u);  // decode steps 3..10 were queued behind the one before
}

// Requests arriving while others decode, greedy and seeded sampling, a stop token and a stop
// string: every output equals the run without overlap, and every page comes back.
std::map<uint64_t, Collected> mixed_load(bool overlap, uint64_t* overlapped, size_t* steps) {
  ToyRunner runner(512, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), with_overlap(overlap));
  std::map<uint64_t, Collected> got;
  auto request = [&](uint64_t i) {
    Request r = greedy_request(prompt_of(static_cast<int>(i), 3 + static_cast<int>(i) * 4), 24, &got, i);
    if (i % 2) {
      r.params.temperature = 0.8;
      r.params.top_p = 0.9;
      r.params.seed = 100 + i;
    }
    if (i == 3) r.params.stop_token_ids = {1234, 2345, 345, 456};
    if (i == 4) r.params.stop = {"a"};
    return r;
  };
  for (uint64_t i = 0; i < 5; ++i) s.add(i, request(i));
  for (int k = 0; k < 7; ++k) s.step();
  for (uint64_t i = 5; i < 11; ++i) s.add(i, request(i));
  run_to_idle(s);
  *overlapped = s.stats().overlapped_steps;
  *steps = runner.batches.size();
  EXPECT_EQ(runner.kv_pool().num_free() + s.cache().cached_pages(), 512);
  return got;
}

TEST(SchedulerOverlap, OutputsEqualTheRunWithoutOverlap) {
  uint64_t plain_overlapped = 0, overlapped = 0;
  size_t plain_steps = 0, steps = 0;
  const auto plain = mixed_load(false, &plain_overlapped, &plain_steps);
  const auto got = mixed_load(true, &overlapped, &steps);
  ASSERT_EQ(got.size(), plain.size());
  for (const auto& [id, c] : plain) {
    EXPECT_EQ(got.at(id).ids, c.ids) << "request " << id;
    EXPECT_EQ(got.at(id).text, c.text) << "request " << id;
    EXPECT_EQ(got.at(id).reason, c.reason) << "request " << id;
  }
  int stopped = 0;
  for (const auto& [id, c] : plain) stopped += c.reason == FinishReason::stop;
  EXPECT_GE(stopped, 1) << "the load should hold a request that stops early";
  EXPECT_EQ(plain_overlapped, 0u);
  EXPECT_GT(overlapped, 10u);
  EXPECT_GE(steps, plain_steps);  // a request that stops on a token computed one more, dropped
}

TEST(SchedulerOverlap, AStopTokenCostsOneStepWhoseTokenIsDropped) {
  std::map<uint64_t, Collected> first;
  {
    ToyRunner runner(64, 4);
    Scheduler s(runner, tokenizer::testing::qwen3(), with_overlap(false));
    s.add(0, greedy_request(prompt_of(3, 12), 10, &first, 0));
    run_to_idle(s);
  }
  ASSERT_EQ(first[0].ids.size(), 10u);
  const int32_t stop = first[0].ids[4];
  for (bool overlap : {false, true}) {
    ToyRunner runner(64, 4);
    Scheduler s(runner, tokenizer::testing::qwen3(), with_overlap(overlap));
    std::map<uint64_t, Collected> got;
    Request r = greedy_request(prompt_of(3, 12), 10, &got, 0);
    r.params.stop_token_ids = {stop};
    s.add(0, std::move(r));
    run_to_idle(s);
    EXPECT_EQ(got[0].reason, FinishReason::stop) << "overlap " << overlap;
    EXPECT_EQ(got[0].ids, std::vector<int32_t>(first[0].ids.begin(), first[0].ids.begin() + 5)) << "overlap " << overlap;
    // A prefill and 4 decode steps; with overlap the step after the stop token ran too.
    EXPECT_EQ(runner.batches.size(), overlap ? 6u : 5u);
    EXPECT_EQ(runner.kv_pool().num_free() + s.cache().cached_pages(), 64);
  }
}

TEST(SchedulerOverlap, AbortingWhileAStepIsInFlightFreesEverything) {
  ToyRunner runner(64, 4);
  SchedulerOptions o = with_overlap(true);
  o.disable_radix_cache = true;
  Scheduler s(runner, tokenizer::testing::qwen3(), o);
  std::map<uint64_t, Collected> got;
  s.add(1, greedy_request(prompt_of(1, 9), 100, &got, 1));
  s.add(2, greedy_request(prompt_of(2, 9), 100, &got, 2));
  for (int i = 0; i < 6; ++i) s.step();
  ASSERT_GT(s.stats().overlapped_steps, 0u);
  EXPECT_FALSE(s.idle());
  const int64_t outputs = got[1].outputs;
  s.abort(1);
  EXPECT_EQ(got[1].reason, FinishReason::abort);
  EXPECT_EQ(got[1].outputs, outputs + 1) << "the abort is its last output: the step in flight delivers nothing to it";
  s.step();  // request 2 goes on; request 1's rows are dropped
  EXPECT_EQ(got[1].outputs, outputs + 1);
  s.abort(2);
  EXPECT_TRUE(s.idle()) << "the last abort completes the step in flight";
  EXPECT_EQ(runner.kv_pool().num_free(), 64);
  EXPECT_EQ(s.idle_leak_report(), "");
}

// A request arriving while another decodes: its prefill is queued behind the decode step in flight
// (it needs none of that step's tokens), and the next decode step behind the prefill, taking the
// new request's first token from the prefill's draw before the host has seen it.
TEST(SchedulerOverlap, APrefillIsQueuedBehindTheDecodeStepInFlight) {
  ToyRunner runner(128, 4);
  Scheduler s(runner, tokenizer::testing::qwen3(), with_overlap(true));
  std::map<uint64_t, Collected> got;
  s.add(1, greedy_request(prompt_of(1, 7), 30, &got, 1));
  for (int i = 0; i < 4; ++i) s.step();
  ASSERT_GT(s.stats().overlapped_steps, 0u);
  const size_t launched = runner.batches.size();
  const size_t delivered = got[1].ids.size();
  const auto prompt = prompt_of(2, 11);
  s.add(2, greedy_request(prompt, 30, &got, 2));

  s.step();  // the prefill goes behind the decode step in flight, whose token then arrives
  ASSERT_EQ(runner.batches.size(), launched + 1);
  const model::ForwardBatch& prefill = runner.batches.back();
  ASSERT_EQ(prefill.seqs.size(), 1u);
  EXPECT_EQ(prefill.seqs[0].tokens, prompt);
  EXPECT_EQ(got[1].ids.size(), delivered + 1);
  EXPECT_TRUE(got[2].ids.empty());

  s.step();  // a decode step of both goes behind the prefill, whose first token then arrives
  ASSERT_EQ(runner.batches.size(), launched + 2);
  const model::ForwardBatch& decode = runner.batches.back();
  ASSERT_EQ(decode.seqs.size(), 2u);
  ASSERT_EQ(got[2].ids.size(), 1u);
  EXPECT_EQ(decode.seqs[1].tokens, std::vector<int32_t>{got[2].ids[0]}) << "the new request's first token";
  EXPECT_EQ(decode.seqs[1].start_pos, 11);
  run_to_idle(s);
  EXPECT_EQ(got[2].ids.size(), 30u);
}

TEST(SchedulerOverlap, ARequestWithPenaltiesWaitsForItsTokens) {
  for (bool overlap : {false, true}) {
    ToyRunner runner(64, 4);
    Scheduler s(runner, tokenizer::testing::qwen3(), with_overlap(overlap));
    std::map<uint64_t, Collected> got;
    Request r = greedy_request(prompt_of(4, 10), 12, &got, 0);
    r.params.repetition_penalty = 1.3;
    r.params.frequency_penalty = 0.5;
    s.add(0, std::move(r));
    run_to_idle(s);
    EXPECT_EQ(got[0].ids.size(), 12u);
    EXPECT_EQ(s.stats().overlapped_steps, 0u) << "overlap " << overlap;
  }
}

}  // namespace
}  // namespace loom::engine
