// loom generate --model-path DIR --prompt-ids 1,2,3 --max-new-tokens N [parallel flags] [--report-comm]
//   ->  {"output_ids": [...]}
#include <cstdio>

#include <nlohmann/json.hpp>

#include "loom/cli/model_flags.h"
#include "loom/cli/parallel_flags.h"
#include "loom/runtime/generate.h"

namespace loom::cli {

int cmd_generate(Args& args) {
  runtime::RunnerOptions options = parse_runner_flags(args);
  const std::vector<int32_t> prompt = parse_prompt_ids(args);
  const int64_t max_new = args.integer({"max-new-tokens"}, 16, 0, 1 << 20);
  const bool report = parse_parallel_run_flags(args, options);
  args.finish();
  if (options.max_total_tokens == 0) options.max_total_tokens = static_cast<int64_t>(prompt.size()) + max_new;
  auto runner = runtime::create_runner(options);
  const int64_t ctx = runner->config().max_position_embeddings;
  LOOM_CHECK_ARG(ctx <= 0 || static_cast<int64_t>(prompt.size()) + max_new <= ctx, "prompt (", prompt.size(),
                 " tokens) + --max-new-tokens (", max_new, ") exceeds the model's context length ", ctx);
  const auto ids = runtime::generate_greedy(*runner, prompt, max_new);
  if (report) report_comm(*runner);
  std::printf("%s\n", nlohmann::json{{"output_ids", ids}}.dump().c_str());
  return 0;
}

}  // namespace loom::cli
