// A parallel run on one node: one thread per rank (rank_threads.h), each with the communicators of
// every group family (parallel/process_groups.h) plus the MoE block and token exchange groups, its
// share of the weights and its own KV pool (its K/V heads; page ids are handed out by rank 0's pool
// and used by every rank). Every rank runs every step; rank 0's logits are returned. Implements
// the same Runner interface as one rank.
// CPU ranks talk over Gloo. CUDA ranks (--device cuda) move tensors over NCCL, one GPU per rank
// from --device's index on, with a Gloo group beside each for host values; or, with
// --dist-backend device-copy, all on --device's GPU through device copies (testing a layout on
// one GPU). Decode steps replay a CUDA graph per rank with the collectives inside (attention-DP
// replicas pad their shares to one bucket), except with device-copy or --disable-cuda-graph.
#pragma once
#include <string>
#include <vector>

#include "loom/runtime/model_runner.h"

namespace loom::runtime {

// Checks the configuration against the model before starting any rank (InvalidArgument naming
// the numbers), then starts the ranks.
std::unique_ptr<Runner> create_parallel_runner(const RunnerOptions& options);

// Payload bytes one rank sent through one kind of collective since the last reset, summed over
// its communicators (parallel/communicator.h defines what counts).
struct CommCount {
  int rank = 0;
  std::string op;
  uint64_t bytes = 0, calls = 0;
};
// Empty for a single-rank runner.
std::vector<CommCount> comm_counts(Runner& runner);
void reset_comm_counts(Runner& runner);

// For tests: on the next forward, `rank` throws Error(what) as it starts, while its peers go on
// into the step's first collective and wait for it. No-op for a single-rank runner.
void inject_rank_failure(Runner& runner, int rank, const std::string& what);

}  // namespace loom::runtime
