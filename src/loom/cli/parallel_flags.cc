#include "loom/cli/parallel_flags.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "loom/runtime/parallel_runner.h"
#include "loom/tensor/error.h"

namespace loom::cli {

parallel::ParallelConfig parse_parallel_flags(Args& args) {
  constexpr int64_t kMaxRanks = 1 << 16;
  parallel::ParallelConfig c;
  c.tp = static_cast<int>(args.integer({"tp-size", "tp"}, 1, 1, kMaxRanks));
  c.pp = static_cast<int>(args.integer({"pp-size"}, 1, 1, kMaxRanks));
  c.ep = static_cast<int>(args.integer({"ep-size"}, 1, 1, kMaxRanks));
  // --moe-cp-size: the older name of --moe-dp-size (SGLang introduced it as that).
  LOOM_CHECK_ARG(!(args.has("moe-dp-size") && args.has("moe-cp-size")),
                 "--moe-cp-size is the older name of --moe-dp-size: give one of them");
  c.moe_dp = static_cast<int>(args.integer({"moe-dp-size", "moe-cp-size"}, 1, 1, kMaxRanks));
  c.attn_cp = static_cast<int>(args.integer({"attn-cp-size"}, 1, 1, kMaxRanks));
  c.prefill_cp = args.flag("enable-prefill-context-parallel");
  const bool dp_attention = args.flag("enable-dp-attention");
  const int dp = static_cast<int>(args.integer({"dp-size"}, 1, 1, kMaxRanks));
  LOOM_CHECK_ARG(dp == 1 || dp_attention, "--dp-size ", dp,
                 " needs --enable-dp-attention (replicated data parallelism is not supported)");
  c.attn_dp = dp_attention ? dp : 1;
  c.nnodes = static_cast<int>(args.integer({"nnodes"}, 1, 1, kMaxRanks));
  c.node_rank = static_cast<int>(args.integer({"node-rank"}, 0, 0, kMaxRanks));
  c.dist_init_addr = args.string("dist-init-addr", "");
  c.dist_timeout_s = static_cast<int>(args.integer({"dist-timeout"}, c.dist_timeout_s, 1, 24 * 3600));
  c.validate(0);
  return c;
}

bool parse_parallel_run_flags(Args& args, runtime::RunnerOptions& o) {
  o.parallel = parse_parallel_flags(args);
  o.moe_dispatch = args.string("moe-dispatch", o.moe_dispatch);
  o.dist_backend = args.string("dist-backend", o.dist_backend);
  return args.flag("report-comm");
}

void report_comm(runtime::Runner& runner) {
  for (const auto& c : runtime::comm_counts(runner))
    std::fprintf(stderr, "%s\n",
                 nlohmann::json{{"rank", c.rank}, {"op", c.op}, {"bytes", c.bytes}, {"calls", c.calls}}.dump().c_str());
}

}  // namespace loom::cli
