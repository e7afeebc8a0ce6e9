#include "loom/parallel/layout.h"

#include <algorithm>

#include "loom/tensor/error.h"

namespace loom::parallel {

const char* family_name(Family f) {
  switch (f) {
    case Family::tp: return "tp";
    case Family::pp: return "pp";
    case Family::attn_tp: return "attn_tp";
    case Family::attn_cp: return "attn_cp";
    case Family::attn_dp: return "attn_dp";
    case Family::moe_tp: return "moe_tp";
    case Family::moe_ep: return "moe_ep";
    case Family::moe_dp: return "moe_dp";
  }
  return "?";
}

int RankCoords::in(Family f) const {
  switch (f) {
    case Family::tp: return tp_rank;
    case Family::pp: return pp_rank;
    case Family::attn_tp: return attn_tp_rank;
    case Family::attn_cp: return attn_cp_rank;
    case Family::attn_dp: return attn_dp_rank;
    case Family::moe_tp: return moe_tp_rank;
    case Family::moe_ep: return moe_ep_rank;
    case Family::moe_dp: return moe_dp_rank;
  }
  return 0;
}

static void check_rank(const ParallelConfig& c, int rank) {
  LOOM_CHECK(rank >= 0 && rank < c.world_size(), "rank ", rank, " is outside the world [0, ",
             c.world_size(), ") of ", c.str());
}

RankCoords rank_coords(const ParallelConfig& c, int rank) {
  check_rank(c, rank);
  RankCoords r;
  r.rank = rank;
  r.tp_rank = rank % c.tp;  // TP groups are blocks of tp consecutive ranks, one per pipeline stage
  r.pp_rank = rank / c.tp;
  const int i = r.tp_rank, atp = c.attn_tp(), mtp = c.moe_tp();
  r.attn_tp_rank = i % atp;
  r.attn_cp_rank = (i / atp) % c.attn_cp;
  r.attn_dp_rank = i / (atp * c.attn_cp);
  r.moe_tp_rank = i % mtp;
  r.moe_ep_rank = (i / mtp) % c.ep;
  r.moe_dp_rank = c.moe_dp_is_attn_cp() ? r.attn_cp_rank : i / (mtp * c.ep);
  return r;
}

// `count` ranks from `first`, `stride` apart.
static std::vector<int> strided(int first, int stride, int count) {
  std::vector<int> v(count);
  for (int k = 0; k < count; ++k) v[k] = first + k * stride;
  return v;
}

std::vector<int> group_of(const ParallelConfig& c, Family f, int rank) {
  check_rank(c, rank);
  const int block = rank - rank % c.tp, i = rank % c.tp;
  const int atp = c.attn_tp(), mtp = c.moe_tp();
  switch (f) {
    case Family::tp: return strided(block, 1, c.tp);
    case Family::pp: return strided(i, c.tp, c.pp);
    case Family::attn_tp: return strided(block + i / atp * atp, 1, atp);
    case Family::attn_cp: {
      const int span = atp * c.attn_cp;  // one attention-DP replica
      return strided(block + i / span * span + i % atp, atp, c.attn_cp);
    }
    case Family::attn_dp: {
      const int span = atp * c.attn_cp;
      return strided(block + i % span, span, c.attn_dp);
    }
    case Family::moe_tp: return strided(block + i / mtp * mtp, 1, mtp);
    case Family::moe_ep: {
      const int span = mtp * c.ep;
      return strided(block + i / span * span + i % mtp, mtp, c.ep);
    }
    case Family::moe_dp: {
      if (c.moe_dp_is_attn_cp()) return group_of(c, Family::attn_cp, rank);
      const int span = mtp * c.ep;
      return strided(block + i % span, span, c.moe_dp);
    }
  }
  return {};
}

std::vector<std::vector<int>> family_groups(const ParallelConfig& c, Family f) {
  std::vector<std::vector<int>> groups;
  std::vector<bool> seen(c.world_size(), false);
  for (int r = 0; r < c.world_size(); ++r) {
    if (seen[r]) continue;
    auto g = group_of(c, f, r);
    for (int m : g) seen[m] = true;
    groups.push_back(std::move(g));
  }
  // Rank r is always the smallest unseen rank, and thus the first member: groups come out ordered.
  return groups;
}

std::string ranks_str(const std::vector<int>& ranks) {
  std::string s = "[";
  for (size_t k = 0; k < ranks.size(); ++k) s += (k ? ", " : "") + std::to_string(ranks[k]);
  return s + "]";
}

}  // namespace loom::parallel
