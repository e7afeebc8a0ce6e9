#include "loom/parallel/gloo_communicator.h"

#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/alltoallv.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <csignal>
#include <exception>
#include <cstring>

#include "loom/parallel/host_collective_math.h"
#include "loom/parallel/layout.h"

namespace loom::parallel {

struct GlooDevice {
  std::shared_ptr<gloo::transport::Device> dev;
};

std::shared_ptr<GlooDevice> make_gloo_device(const std::string& hostname) {
  gloo::transport::tcp::attr attr;
  attr.hostname = hostname;
  try {
    return std::make_shared<GlooDevice>(GlooDevice{gloo::transport::tcp::CreateDevice(attr)});
  } catch (const std::exception& e) {
    throw Error(loom::str("gloo: cannot create a TCP device on '", hostname, "': ", e.what()));
  }
}

namespace {

// Gloo's rendezvous sees our store under the group's key prefix; waits keep our timeout.
class PrefixedGlooStore : public gloo::rendezvous::Store {
 public:
  PrefixedGlooStore(parallel::Store& s, std::string prefix, std::chrono::milliseconds timeout)
      : s_(s), prefix_(std::move(prefix)), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override { s_.set(prefix_ + key, data); }
  std::vector<char> get(const std::string& key) override {
    wait({key});
    return s_.get(prefix_ + key);
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& t) override {
    std::vector<std::string> full;
    for (const auto& k : keys) full.push_back(prefix_ + k);
    s_.wait(full, t.count() > 0 ? t : timeout_);
  }

 private:
  parallel::Store& s_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

// A zero-row tensor may have no storage; Gloo still wants a pointer.
char g_empty_byte;
void* ptr_or_dummy(const Tensor& t) { return t.numel() > 0 ? t.data_ptr() : &g_empty_byte; }

bool is_float16ish(DType d) { return d == DType::bf16 || d == DType::f16; }

}  // namespace

void wait_for_group(Store& store, const std::string& key, const std::vector<int>& ranks, int rank,
                    std::chrono::milliseconds timeout, const std::string& group_name) {
  store.set_string(key + "/arrived/" + std::to_string(rank), "1");
  std::vector<std::string> keys;
  for (size_t r = 0; r < ranks.size(); ++r) keys.push_back(key + "/arrived/" + std::to_string(r));
  try {
    store.wait(keys, timeout);
  } catch (const Error&) {
    const std::exception_ptr wait_error = std::current_exception();
    std::vector<int> missing;
    try {
      for (size_t r = 0; r < ranks.size(); ++r)
        if (!store.check(keys[r])) missing.push_back(ranks[r]);
    } catch (const Error&) {
      std::rethrow_exception(wait_error);  // the store itself is gone: its error says so
    }
    if (missing.empty()) throw;
    throw PeerFailure(loom::str("group ", group_name, ": rank(s) ", ranks_str(missing), " did not arrive within ",
                                timeout.count() / 1000.0, " s (--dist-timeout); did a rank fail to start or die?"));
  }
}

GlooCommunicator::GlooCommunicator(std::string name, std::vector<int> ranks, int rank, Store& store,
                                   const std::string& key, const std::shared_ptr<GlooDevice>& device,
                                   std::chrono::milliseconds timeout)
    : Communicator(std::move(name), std::move(ranks), rank), dev_(device) {
  if (size() == 1) return;  // nothing to connect
  // Gloo's TCP transport writes to sockets without MSG_NOSIGNAL: when a peer rank dies, the
  // default SIGPIPE would kill this whole process instead of letting the write fail and the
  // error reach the caller as "other rank(s) failed".
  static const bool sigpipe_ignored = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;
  wait_for_group(store, key, this->ranks(), rank, timeout, this->name());
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size());
  ctx->setTimeout(timeout);
  PrefixedGlooStore gs(store, key + "/gloo/", timeout);
  try {
    ctx->connectFullMesh(gs, dev_->dev);
  } catch (const gloo::Exception& e) {
    throw PeerFailure(loom::str(this->name(), ": gloo connect failed: ", e.what()));
  }
  ctx_ = std::move(ctx);
  // connectFullMesh may return on one rank while a peer is still finishing its side of a pair;
  // if the first rank then tore its device down, the peer would see "connection closed by peer".
  do_barrier();
}

GlooCommunicator::~GlooCommunicator() = default;

void GlooCommunicator::abort() {
  if (!ctx_) return;
  // Closing our end of each pair makes the peer's end see the connection closed, which fails
  // whatever the peer is waiting for on it (and everything it issues on it later).
  for (int p = 0; p < size(); ++p) {
    if (p == rank()) continue;
    auto& pair = ctx_->getPair(p);
    if (pair) pair->close();
  }
}

// Gloo errors (a peer closed its connection, an operation timed out) become loom errors that name
// the group and the operation.
#define LOOM_GLOO_CALL(opname, ...)                                                                 \
  do {                                                                                              \
    try {                                                                                           \
      __VA_ARGS__;                                                                                  \
    } catch (const gloo::Exception& e_) {                                                          \
      throw PeerFailure(loom::str(name(), ": ", opname, " failed: ", e_.what(),                     \
                                  " (a peer rank exited, or did not join within --dist-timeout)")); \
    }                                                                                               \
  } while (0)

void GlooCommunicator::do_all_reduce_sum(Tensor& t) {
  if (is_float16ish(t.dtype())) {  // accumulate in f32, round once
    Tensor f = t.to(DType::f32);
    do_all_reduce_sum(f);
    t.copy_from(f);
    return;
  }
  gloo::AllreduceOptions opts(ctx_);
  opts.setTag(next_tag());
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.dtype()) {
    case DType::f32:
      opts.setOutput(static_cast<float*>(t.data_ptr()), n);
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      break;
    case DType::i32:
      opts.setOutput(static_cast<int32_t*>(t.data_ptr()), n);
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<int32_t>));
      break;
    case DType::i64:
      opts.setOutput(static_cast<int64_t*>(t.data_ptr()), n);
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<int64_t>));
      break;
    default: throw Error(loom::str(name(), ": all_reduce_sum of ", dtype_name(t.dtype()), " is not supported"));
  }
  LOOM_GLOO_CALL("all_reduce", gloo::allreduce(opts));
}

void GlooCommunicator::check_counts_agree(const char* op, const std::vector<int64_t>& mine,
                                          const std::vector<int64_t>* out_rows) {
  // Every rank gathers every rank's counts and checks all of them, so all reach the same verdict
  // (and the same message) and the group stays in step.
  const size_t n = static_cast<size_t>(size()), w = out_rows ? 2 * n : n;
  std::vector<int64_t> local(mine);
  if (out_rows) local.insert(local.end(), out_rows->begin(), out_rows->end());
  std::vector<int64_t> all(n * w);
  gloo::AllgathervOptions opts(ctx_);
  opts.setTag(next_tag());
  opts.setInput(local.data(), w);
  opts.setOutput(all.data(), std::vector<size_t>(n, w));
  LOOM_GLOO_CALL(op, gloo::allgatherv(opts));
  std::vector<std::vector<int64_t>> counts(n), out_counts(n);
  for (size_t r = 0; r < n; ++r) {
    counts[r].assign(all.begin() + r * w, all.begin() + r * w + n);
    if (out_rows) out_counts[r].assign(all.begin() + r * w + n, all.begin() + (r + 1) * w);
  }
  const std::string wrong = counts_disagreement(op, counts, out_rows ? &out_counts : nullptr);
  if (!wrong.empty()) throw Error(loom::str(name(), ": ", wrong));
}

void GlooCommunicator::do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  if (size() == 1) {
    if (in.numel() > 0) std::memcpy(out.data_ptr(), in.data_ptr(), in.nbytes());  // empty: no storage
    return;
  }
  check_counts_agree("all_gather", rows, nullptr);
  std::vector<size_t> bytes(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) bytes[r] = static_cast<size_t>(rows[r] * row_bytes);
  gloo::AllgathervOptions opts(ctx_);
  opts.setTag(next_tag());
  opts.setInput(static_cast<char*>(ptr_or_dummy(in)), in.nbytes());
  opts.setOutput(static_cast<char*>(ptr_or_dummy(out)), bytes);
  LOOM_GLOO_CALL("all_gather", gloo::allgatherv(opts));
}

void GlooCommunicator::alltoallv_bytes(const void* in, const std::vector<int64_t>& in_bytes, void* out,
                                       const std::vector<int64_t>& out_bytes) {
  gloo::AlltoallvOptions opts(ctx_);
  opts.setTag(next_tag());
  opts.setInput(const_cast<char*>(static_cast<const char*>(in)), in_bytes);
  opts.setOutput(static_cast<char*>(out), out_bytes);
  LOOM_GLOO_CALL("all_to_all", gloo::alltoallv(opts));
}

void GlooCommunicator::do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  // Every rank sends each peer that peer's rows, then sums what it got in rank order: the same
  // traffic as a ring reduce-scatter, and the result is exactly the serial sum.
  const int64_t elems = row_elems(in), esize = static_cast<int64_t>(dtype_size(in.dtype()));
  const int64_t mine = rows[rank()] * elems;
  if (size() == 1) {
    if (in.numel() > 0) std::memcpy(out.data_ptr(), in.data_ptr(), in.nbytes());  // empty: no storage
    return;
  }
  check_counts_agree("reduce_scatter", rows, nullptr);
  std::vector<int64_t> in_bytes(size()), out_bytes(size(), mine * esize);
  for (int p = 0; p < size(); ++p) in_bytes[p] = rows[p] * elems * esize;
  std::vector<char> received(static_cast<size_t>(mine * esize * size()) + 1);
  alltoallv_bytes(ptr_or_dummy(in), in_bytes, received.data(), out_bytes);
  std::vector<const void*> parts(size());
  for (int p = 0; p < size(); ++p) parts[p] = received.data() + p * mine * esize;
  if (mine > 0) sum_in_order(parts, mine, out.data_ptr(), in.dtype());
}

void GlooCommunicator::do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                                     const std::vector<int64_t>& out_rows) {
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  if (size() == 1) {
    if (in.numel() > 0) std::memcpy(out.data_ptr(), in.data_ptr(), in.nbytes());
    return;
  }
  check_counts_agree("all_to_all", in_rows, &out_rows);
  std::vector<int64_t> ib(size()), ob(size());
  for (int p = 0; p < size(); ++p) {
    ib[p] = in_rows[p] * row_bytes;
    ob[p] = out_rows[p] * row_bytes;
  }
  alltoallv_bytes(ptr_or_dummy(in), ib, ptr_or_dummy(out), ob);
}

void GlooCommunicator::do_broadcast(Tensor& t, int root) {
  gloo::BroadcastOptions opts(ctx_);
  opts.setTag(next_tag());
  opts.setRoot(root);
  opts.setOutput(static_cast<char*>(t.data_ptr()), t.nbytes());
  LOOM_GLOO_CALL("broadcast", gloo::broadcast(opts));
}

void GlooCommunicator::do_barrier() {
  gloo::BarrierOptions opts(ctx_);
  opts.setTag(next_tag());
  LOOM_GLOO_CALL("barrier", gloo::barrier(opts));
}

}  // namespace loom::parallel
