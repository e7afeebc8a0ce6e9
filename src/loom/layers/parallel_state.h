// The groups a rank's layers communicate in, built once per rank by the runtime from the
// ParallelConfig (a default-constructed state is one rank: every group alone). Models pass it to
// their layers and never name a rank or a communicator themselves.
#pragma once
#include "loom/layers/group.h"
#include "loom/parallel/moe_token_plan.h"
#include "loom/parallel/parallel_config.h"

namespace loom::layers {

// How routed tokens reach the expert-parallel ranks when each rank holds different tokens.
enum class MoeDispatch { automatic, gather, all_to_all };

struct ParallelState {
  parallel::ParallelConfig config;  // tp 1: one rank
  int tp_rank = 0;                  // this rank's index in its TP group
  Group attn_tp;    // attention heads and vocabulary are split over it
  Group attn_cp;    // K/V all-gather of a context-parallel prefill; logits rows of a CP prefill
  Group attn_dp;    // logits rows of the attention-DP replicas
  Group moe_block;  // MOE_TP × MOE_EP: ranks whose partial expert (and dense MLP) outputs add up
  int moe_tp_rank = 0, moe_ep_rank = 0;

  struct Exchange {  // parallel/moe_token_plan.h
    parallel::TokenExchange mode = parallel::TokenExchange::own;
    Group group;
  };
  Exchange plain, cp_split;  // for plain steps and for steps whose prefill is split over ATTN_CP
  MoeDispatch dispatch = MoeDispatch::automatic;

  bool single() const { return config.world_size() == 1; }
  const Exchange& exchange(bool cp) const { return cp ? cp_split : plain; }
};

}  // namespace loom::layers
