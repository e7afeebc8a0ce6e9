// Rank layout: which ranks form each family's groups, and each rank's coordinates. Pure functions,
// no communication. The math is SGLang's (DESIGN.md, "Parallel layout"), so a configuration means
// the same thing in both engines.
#pragma once
#include <string>
#include <vector>

#include "loom/parallel/parallel_config.h"

namespace loom::parallel {

enum class Family { tp, pp, attn_tp, attn_cp, attn_dp, moe_tp, moe_ep, moe_dp };
inline constexpr Family kAllFamilies[] = {Family::tp,      Family::pp,      Family::attn_tp,
                                          Family::attn_cp, Family::attn_dp, Family::moe_tp,
                                          Family::moe_ep,  Family::moe_dp};
const char* family_name(Family f);  // "tp", "attn_cp", ...

// A rank's place in every family: its index inside the group of that family it belongs to.
struct RankCoords {
  int rank = 0;
  int tp_rank = 0, pp_rank = 0;
  int attn_tp_rank = 0, attn_cp_rank = 0, attn_dp_rank = 0;
  int moe_tp_rank = 0, moe_ep_rank = 0, moe_dp_rank = 0;

  int in(Family f) const;  // the coordinate for family f
};

// Both take a config that passed validate(); rank in [0, world_size).
RankCoords rank_coords(const ParallelConfig& c, int rank);
// The members of `rank`'s group of family f, in group-rank order (member k has coordinate k).
std::vector<int> group_of(const ParallelConfig& c, Family f, int rank);
// Every group of family f, ordered by first member; together they partition [0, world_size).
std::vector<std::vector<int>> family_groups(const ParallelConfig& c, Family f);

// "[0, 2, 4]"
std::string ranks_str(const std::vector<int>& ranks);

}  // namespace loom::parallel
