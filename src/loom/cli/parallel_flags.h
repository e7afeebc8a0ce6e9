// The parallel flags every command shares (logits, generate, serve, parallel-layout):
// --tp-size/--tp, --pp-size, --ep-size, --moe-dp-size, --attn-cp-size, --enable-dp-attention,
// --dp-size, --nnodes, --node-rank, --dist-init-addr host:port, --dist-timeout (seconds).
#pragma once
#include "loom/cli/args.h"
#include "loom/parallel/parallel_config.h"

namespace loom::cli {

// Reads the flags and validates the result (local device count unknown: 0); bad combinations throw
// InvalidArgument naming the flags and numbers (the CLI's exit code 2).
parallel::ParallelConfig parse_parallel_flags(Args& args);

}  // namespace loom::cli
