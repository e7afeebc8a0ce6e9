#include "loom/parallel/rank_launcher.h"

#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "loom/parallel/tcp_store.h"
#include "loom/tensor/error.h"

namespace loom::parallel {

void rethrow_for_rank(int rank, std::exception_ptr error, const std::string& suffix) {
  try {
    std::rethrow_exception(error);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(loom::str("rank ", rank, ": ", e.what(), suffix));
  } catch (const std::exception& e) {
    throw Error(loom::str("rank ", rank, ": ", e.what(), suffix));
  }
}

void run_threads(int n, int first_rank, Store& store, const RankFn& fn) {
  std::mutex mu;
  int failed_rank = -1, failures = 0;
  std::exception_ptr first_error;
  auto body = [&](int local) {
    const int rank = first_rank + local;
    try {
      fn(rank, local, store);
    } catch (...) {
      std::string what = "unknown error";
      try {
        throw;
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        ++failures;
        if (!first_error) {
          first_error = std::current_exception();
          failed_rank = rank;
        }
      }
      try {
        store.abort(loom::str("rank ", rank, " failed: ", what));
      } catch (...) {  // the store may be the thing that failed
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int i = 0; i < n; ++i) threads.emplace_back(body, i);
  for (auto& t : threads) t.join();
  if (!first_error) return;
  rethrow_for_rank(failed_rank, first_error,
                   failures > 1 ? loom::str(" (and ", failures - 1, " other rank(s) failed)") : "");
}

void run_local(int world_size, std::chrono::milliseconds timeout, const RankFn& fn) {
  HashStore store(timeout);
  run_threads(world_size, 0, store, fn);
}

void run_node(const ParallelConfig& c, const RankFn& fn) {
  c.validate();
  const std::chrono::milliseconds timeout = std::chrono::seconds(c.dist_timeout_s);
  const int local = c.ranks_per_node();
  if (c.dist_init_addr.empty()) {  // validate() guarantees nnodes == 1 here
    run_local(local, timeout, fn);
    return;
  }
  std::string host;
  int port = 0;
  parse_host_port(c.dist_init_addr, host, port);
  TcpStore store(host, port, timeout, /*start_server=*/c.node_rank == 0);
  std::exception_ptr error;
  try {
    run_threads(local, c.node_rank * local, store, fn);
  } catch (...) {
    error = std::current_exception();
  }
  // Node 0 owns the server: it stays up until every node is done with it (or the timeout).
  try {
    store.set_string("launcher/node_done/" + std::to_string(c.node_rank), "1");
    if (c.node_rank == 0) {
      std::vector<std::string> keys;
      for (int k = 0; k < c.nnodes; ++k) keys.push_back("launcher/node_done/" + std::to_string(k));
      store.wait(keys, timeout);
    }
  } catch (const Error&) {
    if (!error) throw;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace loom::parallel
