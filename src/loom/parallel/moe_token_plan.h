// Where the tokens of a MoE (or dense MLP) layer come from. Attention leaves every rank with the
// hidden states of its "attention class" (the ranks that ran the same tokens: one ATTN_TP group
// when the prefill is split over ATTN_CP, else the ATTN_TP × ATTN_CP ranks of one attention-DP
// replica). The MoE block (MOE_TP × MOE_EP: the ranks that sum partial expert outputs) must hold
// one token set, so
//   - own:    block and class coincide; MoE runs on the rank's own tokens;
//   - split:  several blocks share one class: block k takes the k-th slice of its tokens and the
//             slices are all-gathered back afterwards (tp 4, ep 2, moe_dp 2);
//   - gather: one block spans several classes: their tokens are all-gathered before MoE and each
//             rank keeps its own rows after (CP partners, attention-DP replicas).
// `members` is the group the tokens move in (global ranks, in order); `index` this rank's place.
#pragma once
#include <vector>

#include "loom/parallel/parallel_config.h"

namespace loom::parallel {

enum class TokenExchange { own, split, gather };
const char* exchange_name(TokenExchange e);

struct MoeTokenPlan {
  TokenExchange mode = TokenExchange::own;
  std::vector<int> members;
  int index = 0;
};

// Ranks holding the same attention tokens as `rank` (cp_split: this step's prefill is split over
// ATTN_CP, so CP partners hold different tokens).
std::vector<int> attention_class(const ParallelConfig& c, int rank, bool cp_split);
// Ranks that sum their partial MoE outputs (MOE_TP × MOE_EP), consecutive.
std::vector<int> moe_block(const ParallelConfig& c, int rank);
// Throws InvalidArgument when class and block overlap without one containing the other.
MoeTokenPlan moe_token_plan(const ParallelConfig& c, int rank, bool cp_split);

}  // namespace loom::parallel
