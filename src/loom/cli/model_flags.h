// Flags shared by the commands that load a model (logits, generate, serve, bench).
#pragma once
#include <vector>

#include "loom/cli/args.h"
#include "loom/runtime/model_runner.h"

namespace loom::cli {

// --model-path, --device, --dtype, --load-format, --page-size, --max-total-tokens,
// --mem-fraction-static, --disable-cuda-graph, --cuda-graph-max-bs, --disable-piecewise-cuda-graph,
// --piecewise-cuda-graph-max-tokens.
runtime::RunnerOptions parse_runner_flags(Args& args);

// --prompt-ids 1,2,3 (non-empty, each within int32).
std::vector<int32_t> parse_prompt_ids(Args& args);

}  // namespace loom::cli
