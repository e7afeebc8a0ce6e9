// loom logits --model-path DIR --prompt-ids 1,2,3 [--all-positions] [parallel flags] [--report-comm]
//   ->  {"logits": [...]}
#include <cstdio>

#include <nlohmann/json.hpp>

#include "loom/cli/model_flags.h"
#include "loom/cli/parallel_flags.h"
#include "loom/runtime/generate.h"

namespace loom::cli {

int cmd_logits(Args& args) {
  runtime::RunnerOptions options = parse_runner_flags(args);
  const std::vector<int32_t> prompt = parse_prompt_ids(args);
  const bool all = args.flag("all-positions");
  const bool report = parse_parallel_run_flags(args, options);
  args.finish();
  if (options.max_total_tokens == 0) options.max_total_tokens = static_cast<int64_t>(prompt.size());
  auto runner = runtime::create_runner(options);
  runtime::check_prompt(prompt, runner->config().vocab_size);
  const Tensor logits = runtime::prompt_logits(*runner, prompt, all).contiguous();
  if (report) report_comm(*runner);
  const int64_t rows = logits.size(0), v = logits.size(1);
  const float* p = logits.data<float>();
  nlohmann::json out;
  if (all) {
    out["logits"] = nlohmann::json::array();
    for (int64_t r = 0; r < rows; ++r) out["logits"].push_back(std::vector<float>(p + r * v, p + (r + 1) * v));
  } else {
    out["logits"] = std::vector<float>(p, p + v);
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace loom::cli
