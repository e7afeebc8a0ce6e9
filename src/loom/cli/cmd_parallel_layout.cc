// `loom parallel-layout`: every family's groups and each rank's coordinates for a configuration.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "loom/cli/args.h"
#include "loom/cli/parallel_flags.h"
#include "loom/parallel/layout.h"
#include "loom/tensor/error.h"

namespace loom::cli {

using parallel::Family;

static nlohmann::json coords_json(const parallel::RankCoords& r) {
  return {{"rank", r.rank},
          {"tp_rank", r.tp_rank},
          {"pp_rank", r.pp_rank},
          {"attn_tp_rank", r.attn_tp_rank},
          {"attn_cp_rank", r.attn_cp_rank},
          {"attn_dp_rank", r.attn_dp_rank},
          {"moe_tp_rank", r.moe_tp_rank},
          {"moe_ep_rank", r.moe_ep_rank},
          {"moe_dp_rank", r.moe_dp_rank}};
}

int cmd_parallel_layout(Args& args) {
  const std::string format = args.string("format", "text");
  LOOM_CHECK_ARG(format == "text" || format == "json", "--format: '", format, "' is not one of: text, json");
  const parallel::ParallelConfig c = parse_parallel_flags(args);
  args.finish();

  if (format == "json") {
    nlohmann::json groups = nlohmann::json::object(), ranks = nlohmann::json::array();
    for (Family f : parallel::kAllFamilies) groups[parallel::family_name(f)] = parallel::family_groups(c, f);
    for (int r = 0; r < c.world_size(); ++r) ranks.push_back(coords_json(parallel::rank_coords(c, r)));
    nlohmann::json out = {{"world_size", c.world_size()},
                          {"sizes",
                           {{"tp", c.tp},
                            {"pp", c.pp},
                            {"attn_tp", c.attn_tp()},
                            {"attn_cp", c.attn_cp},
                            {"attn_dp", c.attn_dp},
                            {"moe_tp", c.moe_tp()},
                            {"moe_ep", c.ep},
                            {"moe_dp", c.moe_dp}}},
                          {"groups", groups},
                          {"ranks", ranks}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }

  std::printf("world %d: %s\n", c.world_size(), c.str().c_str());
  if (c.moe_dp_is_attn_cp())
    std::printf("note: attn_cp %d > moe_dp %d, so MOE_DP is the ATTN_CP group\n", c.attn_cp, c.moe_dp);
  for (Family f : parallel::kAllFamilies) {
    std::string line;
    for (const auto& g : parallel::family_groups(c, f)) line += " " + parallel::ranks_str(g);
    std::printf("%-8s%s\n", parallel::family_name(f), line.c_str());
  }
  std::printf("\n%5s %4s %4s %8s %8s %8s %7s %7s %7s\n", "rank", "tp", "pp", "attn_tp", "attn_cp", "attn_dp",
              "moe_tp", "moe_ep", "moe_dp");
  for (int r = 0; r < c.world_size(); ++r) {
    const auto k = parallel::rank_coords(c, r);
    std::printf("%5d %4d %4d %8d %8d %8d %7d %7d %7d\n", k.rank, k.tp_rank, k.pp_rank, k.attn_tp_rank,
                k.attn_cp_rank, k.attn_dp_rank, k.moe_tp_rank, k.moe_ep_rank, k.moe_dp_rank);
  }
  return 0;
}

}  // namespace loom::cli
