// What the scheduler tests share: a request that collects its outputs, prompts, stepping to idle.
#pragma once
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "loom/engine/scheduler.h"

namespace loom::engine::testing {

struct Collected {
  std::vector<int32_t> ids;
  std::string text;
  FinishReason reason = FinishReason::none;
  int64_t cached = 0;
  int64_t outputs = 0;
};

inline Request greedy_request(std::vector<int32_t> prompt, int64_t max_tokens, std::map<uint64_t, Collected>* sink,
                              uint64_t id) {
  Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.on_output = [sink, id](const RequestOutput& o) {
    auto& c = (*sink)[id];
    c.ids.insert(c.ids.end(), o.token_ids.begin(), o.token_ids.end());
    c.text += o.text;
    ++c.outputs;
    if (o.finished) {
      c.reason = o.finish_reason;
      c.cached = o.cached_tokens;
    }
  };
  return r;
}

inline std::vector<int32_t> prompt_of(int seed, int len) {
  std::vector<int32_t> p;
  for (int i = 0; i < len; ++i) p.push_back(300 + (seed * 131 + i * 17) % 2000);
  return p;
}

// Steps until idle (bounded), then checks the pool is whole.
inline void run_to_idle(Scheduler& s, int max_steps = 20000) {
  for (int i = 0; i < max_steps && !s.idle(); ++i) s.step();
  ASSERT_TRUE(s.idle()) << "scheduler did not drain in " << max_steps << " steps";
  EXPECT_EQ(s.idle_leak_report(), "");
}

}  // namespace loom::engine::testing
