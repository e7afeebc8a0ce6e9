// Runs one function per rank, one thread per local rank. Any rank's exception ends the run: the
// store is aborted so the others stop waiting, and the error comes back with the rank number.
#pragma once
#include <chrono>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

#include "loom/parallel/parallel_config.h"
#include "loom/parallel/store.h"

namespace loom::parallel {

// rank: global rank; local_rank: index of the thread on this node (the GPU it drives).
using RankFn = std::function<void(int rank, int local_rank, Store& store)>;

// Rethrows a rank's error as "rank R: <what><suffix>"; an InvalidArgument stays one (exit 2).
[[noreturn]] void rethrow_for_rank(int rank, std::exception_ptr error, const std::string& suffix = "");

// Collects the failures of ranks that run together and picks the one to report: the first that is
// not a PeerFailure (the cause), else the first. Thread-safe.
class RankFailures {
 public:
  void add(int rank, std::exception_ptr error);
  bool any() const;
  int count() const;
  // The rank and error to report (rank -1 and null when none failed).
  std::pair<int, std::exception_ptr> cause() const;
  // "rank R failed: <what>" for the cause, "" when none failed.
  std::string str() const;

 private:
  mutable std::mutex mu_;
  int count_ = 0;
  int rank_ = -1;
  std::exception_ptr error_;
  bool is_cause_ = false;  // error_ is not a PeerFailure
};

// Runs ranks [first_rank, first_rank + n) as threads sharing `store`. Throws after every thread
// ended: "rank R: <error>" for the first rank that failed (InvalidArgument stays InvalidArgument).
void run_threads(int n, int first_rank, Store& store, const RankFn& fn);

// One process, `world_size` ranks, an in-process store whose waits end after `timeout`.
void run_local(int world_size, std::chrono::milliseconds timeout, const RankFn& fn);

// This node's share of a multi-node (or multi-process) run: c.ranks_per_node() threads with global
// ranks node_rank * ranks_per_node + local_rank. Node 0 serves the store at c.dist_init_addr (a
// single-node run without an address uses an in-process store); all rendezvous there.
void run_node(const ParallelConfig& c, const RankFn& fn);

}  // namespace loom::parallel
