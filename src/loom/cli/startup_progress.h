// Start-up progress on a terminal: when stderr is a TTY, loading the weights and capturing the
// CUDA graphs each draw a bar redrawn in place; elsewhere (logs, pipes, CI) nothing is drawn and
// the commands' one-line summaries say how start-up went.
#pragma once
#include "loom/model/causal_lm.h"

namespace loom::cli {

// A progress callback for RunnerOptions::progress, or an empty one when stderr is not a terminal.
model::ProgressFn terminal_progress();

}  // namespace loom::cli
