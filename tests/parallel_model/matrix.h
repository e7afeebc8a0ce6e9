// The parallel configurations of issue 5 and the checkpoints they run on, shared by the tests.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "loom/parallel/parallel_config.h"

namespace loom::testing {

struct ParallelCase {
  std::string name;
  int tp = 1, ep = 1, moe_dp = 1, attn_cp = 1, attn_dp = 1;
  std::string dispatch = "auto";

  parallel::ParallelConfig config() const {
    parallel::ParallelConfig c;
    c.tp = tp;
    c.ep = ep;
    c.moe_dp = moe_dp;
    c.attn_cp = attn_cp;
    c.attn_dp = attn_dp;
    c.prefill_cp = attn_cp > 1;
    c.dist_timeout_s = 120;
    return c;
  }
};

inline void PrintTo(const ParallelCase& c, std::ostream* os) { *os << c.name; }  // gtest's name for it

inline const std::vector<ParallelCase>& parallel_cases() {
  static const std::vector<ParallelCase> cases = {
      {"tp2", 2},
      {"tp4", 4},
      {"tp2_ep2", 2, 2},
      {"tp4_ep4", 4, 4},
      {"tp4_ep2", 4, 2},  // moe_tp 2
      {"tp4_ep2_moedp2", 4, 2, 2},
      {"tp2_cp2", 2, 1, 1, 2},
      {"tp4_cp2", 4, 1, 1, 2},
      {"tp4_cp4", 4, 1, 1, 4},
      {"tp4_cp2_ep2", 4, 2, 1, 2},
      {"tp4_cp2_ep2_moedp2", 4, 2, 2, 2},
      {"tp2_dp2_ep2", 2, 2, 1, 1, 2},                   // attention DP; MoE dispatch chosen by bytes
      {"tp2_dp2_ep2_gather", 2, 2, 1, 1, 2, "gather"},  // the same, all-gather + reduce-scatter forced
      {"tp2_cp2_ep2_a2a", 2, 2, 1, 2, 1, "all_to_all"}, // CP with attn_tp 1: all-to-all forced
      {"tp4_dp2_ep2", 4, 2, 1, 1, 2},                   // attention DP with attn_tp 2
  };
  return cases;
}

inline const std::vector<int>& prompt_lengths() {
  static const std::vector<int> n = {1, 2, 3, 7, 33, 257, 600};
  return n;
}

}  // namespace loom::testing
