#include "loom/parallel/host_copy_communicator.h"

#include <cstring>
#include <exception>

#include "loom/parallel/host_collective_math.h"

namespace loom::parallel {
namespace {

const char* at(const void* p, int64_t bytes) { return static_cast<const char*>(p) + bytes; }

void copy_bytes(void* dst, const void* src, int64_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, static_cast<size_t>(bytes));
}

}  // namespace

HostCopyCommunicator::HostCopyCommunicator(std::string name, std::vector<int> ranks, int rank, const Store& store,
                                           const std::string& key, std::chrono::milliseconds timeout)
    : Communicator(std::move(name), std::move(ranks), rank), timeout_(timeout) {
  shared_ = join_in_process<InProcessRendezvous>(str(static_cast<const void*>(&store), "/", key), size());
  std::unique_lock<std::mutex> lock(shared_->mu);
  shared_->join(lock, this->rank(), this->name(), this->ranks(), timeout_,
                "the host-copy backend needs every rank in this process");
}

HostCopyCommunicator::~HostCopyCommunicator() { shared_->abort(); }

void HostCopyCommunicator::abort() { shared_->abort(); }

void HostCopyCommunicator::exchange(const char* op, InProcessPost mine, bool check_counts,
                                    const std::function<void(const std::vector<InProcessPost>&)>& read) {
  const std::vector<InProcessPost> all = shared_->post_and_meet(rank(), std::move(mine), name(), timeout_);
  std::string wrong;
  if (check_counts) {
    std::vector<std::vector<int64_t>> counts, out_counts;
    for (const auto& p : all) counts.push_back(p.rows), out_counts.push_back(p.out_rows);
    const bool pairwise = !all[0].out_rows.empty();
    wrong = counts_disagreement(op, counts, pairwise ? &out_counts : nullptr);
  }
  // Every member reaches the same verdict from the same posts; none reads when the counts are wrong.
  // A member whose read fails still meets the others, so they never wait for it.
  std::exception_ptr failed;
  if (wrong.empty()) try {
      read(all);
    } catch (...) {
      failed = std::current_exception();
    }
  shared_->meet(name(), timeout_);  // every member is done with the others' buffers
  if (failed) std::rethrow_exception(failed);
  if (!wrong.empty()) throw Error(str(name(), ": ", wrong));
}

void HostCopyCommunicator::do_all_reduce_sum(Tensor& t) {
  // Sum into scratch first: the peers read t until the exchange ends.
  Tensor sum = Tensor::empty(t.shape(), t.dtype());
  exchange("all_reduce", {t.data_ptr(), {}, {}}, false, [&](const std::vector<InProcessPost>& all) {
    std::vector<const void*> parts;
    for (const auto& p : all) parts.push_back(p.data);
    sum_in_order(parts, t.numel(), sum.data_ptr(), t.dtype());
  });
  copy_bytes(t.data_ptr(), sum.data_ptr(), t.nbytes());
}

void HostCopyCommunicator::do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  exchange("all_gather", {in.data_ptr(), rows, {}}, true, [&](const std::vector<InProcessPost>& all) {
    int64_t offset = 0;
    for (int p = 0; p < size(); ++p) {
      copy_bytes(static_cast<char*>(out.data_ptr()) + offset, all[p].data, rows[p] * row_bytes);
      offset += rows[p] * row_bytes;
    }
  });
}

void HostCopyCommunicator::do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  const int64_t elems = row_elems(in), esize = static_cast<int64_t>(dtype_size(in.dtype()));
  int64_t first = 0;
  for (int p = 0; p < rank(); ++p) first += rows[p];
  exchange("reduce_scatter", {in.data_ptr(), rows, {}}, true, [&](const std::vector<InProcessPost>& all) {
    std::vector<const void*> parts;
    for (const auto& p : all) parts.push_back(at(p.data, first * elems * esize));
    if (rows[rank()] > 0) sum_in_order(parts, rows[rank()] * elems, out.data_ptr(), in.dtype());
  });
}

void HostCopyCommunicator::do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                                         const std::vector<int64_t>& out_rows) {
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  exchange("all_to_all", {in.data_ptr(), in_rows, out_rows}, true, [&](const std::vector<InProcessPost>& all) {
    int64_t offset = 0;
    for (int p = 0; p < size(); ++p) {
      int64_t from = 0;  // where p's rows for this member start in p's buffer
      for (int q = 0; q < rank(); ++q) from += all[p].rows[q];
      copy_bytes(static_cast<char*>(out.data_ptr()) + offset, at(all[p].data, from * row_bytes),
                 out_rows[p] * row_bytes);
      offset += out_rows[p] * row_bytes;
    }
  });
}

void HostCopyCommunicator::do_broadcast(Tensor& t, int root) {
  exchange("broadcast", {t.data_ptr(), {}, {}}, false, [&](const std::vector<InProcessPost>& all) {
    if (rank() != root) copy_bytes(t.data_ptr(), all[root].data, t.nbytes());
  });
}

void HostCopyCommunicator::do_barrier() {
  exchange("barrier", {}, false, [](const std::vector<InProcessPost>&) {});
}

}  // namespace loom::parallel
