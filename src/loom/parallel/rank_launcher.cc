#include "loom/parallel/rank_launcher.h"

#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "loom/parallel/communicator.h"
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

namespace {

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
  }
  return "unknown error";
}

bool is_peer_failure(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const PeerFailure&) {
    return true;
  } catch (...) {
  }
  return false;
}

}  // namespace

void RankFailures::add(int rank, std::exception_ptr error) {
  const bool cause = !is_peer_failure(error);
  std::lock_guard<std::mutex> lock(mu_);
  ++count_;
  if (!error_ || (cause && !is_cause_)) {
    rank_ = rank;
    error_ = std::move(error);
    is_cause_ = cause;
  }
}

bool RankFailures::any() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_ != nullptr;
}

int RankFailures::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

std::pair<int, std::exception_ptr> RankFailures::cause() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {rank_, error_};
}

std::string RankFailures::str() const {
  // Read the exception under the lock: a later cause that add() stores in its place may drop the
  // last reference to it, and that destruction must be ordered after this read by something TSan
  // sees (exception_ptr's reference count is an atomic inside uninstrumented libstdc++.so).
  std::lock_guard<std::mutex> lock(mu_);
  return error_ ? loom::str("rank ", rank_, " failed: ", what_of(error_)) : "";
}

void run_threads(int n, int first_rank, Store& store, const RankFn& fn) {
  RankFailures failures;
  auto body = [&](int local) {
    const int rank = first_rank + local;
    try {
      fn(rank, local, store);
    } catch (...) {
      failures.add(rank, std::current_exception());
      try {
        store.abort(failures.str());
      } catch (...) {  // the store may be the thing that failed
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int i = 0; i < n; ++i) threads.emplace_back(body, i);
  for (auto& t : threads) t.join();
  if (!failures.any()) return;
  const auto [rank, error] = failures.cause();
  const int others = failures.count() - 1;
  rethrow_for_rank(rank, error, others > 0 ? loom::str(" (and ", others, " other rank(s) failed)") : "");
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
