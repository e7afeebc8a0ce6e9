// The parallel flags every command shares (logits, generate, serve, parallel-layout):
// --tp-size/--tp, --pp-size, --ep-size, --moe-dp-size, --attn-cp-size,
// --enable-prefill-context-parallel, --enable-dp-attention, --dp-size, --nnodes, --node-rank,
// --dist-init-addr host:port, --dist-timeout (seconds).
#pragma once
#include "loom/cli/args.h"
#include "loom/parallel/parallel_config.h"
#include "loom/runtime/model_runner.h"

namespace loom::cli {

// Reads the flags and validates the result (local device count unknown: 0); bad combinations throw
// InvalidArgument naming the flags and numbers (the CLI's exit code 2).
parallel::ParallelConfig parse_parallel_flags(Args& args);

// The parallel flags of a model-running command (logits, generate) into `o`, plus
// --moe-dispatch auto|gather|all_to_all. Returns whether --report-comm was given.
bool parse_parallel_run_flags(Args& args, runtime::RunnerOptions& o);

// --report-comm: the bytes each rank sent per collective, one JSON line per rank and op on stderr.
void report_comm(runtime::Runner& runner);

}  // namespace loom::cli
