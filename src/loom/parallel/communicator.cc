#include "loom/parallel/communicator.h"

#include <numeric>

#include "loom/parallel/graph_registry.h"
#include "loom/parallel/layout.h"

namespace loom::parallel {

const char* op_name(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::all_reduce: return "all_reduce";
    case CollectiveOp::all_gather: return "all_gather";
    case CollectiveOp::reduce_scatter: return "reduce_scatter";
    case CollectiveOp::all_to_all: return "all_to_all";
    case CollectiveOp::broadcast: return "broadcast";
    case CollectiveOp::barrier: return "barrier";
  }
  return "?";
}

Communicator::Communicator(std::string name, std::vector<int> ranks, int rank)
    : name_(std::move(name)), ranks_(std::move(ranks)), rank_(rank) {
  LOOM_CHECK(rank_ >= 0 && rank_ < size(), "communicator ", name_, ": rank ", rank_, " outside group of ",
             size());
}

void Communicator::reset_counters() {
  bytes_.fill(0);
  calls_.fill(0);
}

void Communicator::check_capture_allowed() const {
  if (GraphCaptureGuard::active() && !capture_prepared_)
    throw Error(loom::str("communicator ", name_,
                          " was used during CUDA-graph capture but was never registered with the "
                          "GraphRegistry (a layer must take its groups from the registry so capture "
                          "can prepare them)"));
}

void Communicator::prepare_for_capture() {
  do_prepare_for_capture();
  capture_prepared_ = true;
}

int64_t Communicator::row_elems(const Tensor& t) {
  int64_t n = 1;
  for (int d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}

void Communicator::begin(CollectiveOp op, uint64_t bytes) {
  check_capture_allowed();
  bytes_[static_cast<int>(op)] += bytes;
  calls_[static_cast<int>(op)] += 1;
  ++sequence_;
}

void Communicator::check_tensor(const Tensor& t, const char* what) const {
  LOOM_CHECK(t.defined(), name_, ": ", what, " tensor is undefined");
  LOOM_CHECK(t.is_contiguous(), name_, ": ", what, " tensor ", t.str(), " must be contiguous");
  LOOM_CHECK(t.device() == device(), name_, ": ", what, " tensor ", t.str(), " is not on ", device().str());
  const DType d = t.dtype();
  LOOM_CHECK(d == DType::f32 || d == DType::bf16 || d == DType::f16 || d == DType::i32 ||
                 d == DType::i64 || d == DType::u8,
             name_, ": unsupported dtype ", dtype_name(d));
}

static bool same_row_shape(const Tensor& a, const Tensor& b) {
  if (a.dim() != b.dim() || a.dim() == 0) return false;
  for (int d = 1; d < a.dim(); ++d)
    if (a.size(d) != b.size(d)) return false;
  return true;
}

std::vector<int64_t> Communicator::resolve_counts(const std::vector<int64_t>& counts, int64_t equal_rows,
                                                  const char* op) const {
  if (counts.empty()) return std::vector<int64_t>(size(), equal_rows);
  LOOM_CHECK(static_cast<int>(counts.size()) == size(), name_, ": ", op, " got ", counts.size(),
             " counts for a group of ", size());
  for (int64_t c : counts) LOOM_CHECK(c >= 0, name_, ": ", op, " count ", c, " is negative");
  return counts;
}

static int64_t sum(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

void Communicator::all_reduce_sum(Tensor& t) {
  check_tensor(t, "all_reduce");
  LOOM_CHECK(t.dtype() != DType::u8, name_, ": all_reduce_sum of u8 is not supported");
  begin(CollectiveOp::all_reduce, t.nbytes());
  if (size() > 1 && t.numel() > 0) do_all_reduce_sum(t);
}

void Communicator::all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts) {
  check_tensor(in, "all_gather input");
  check_tensor(out, "all_gather output");
  LOOM_CHECK(in.dtype() == out.dtype() && same_row_shape(in, out), name_, ": all_gather ", in.str(),
             " into ", out.str(), ": dtypes and dims after 0 must agree");
  auto rows = resolve_counts(counts, in.size(0), "all_gather");
  LOOM_CHECK(rows[rank_] == in.size(0), name_, ": all_gather input has ", in.size(0), " rows but counts[",
             rank_, "] = ", rows[rank_]);
  LOOM_CHECK(out.size(0) == sum(rows), name_, ": all_gather output has ", out.size(0),
             " rows, counts add up to ", sum(rows));
  begin(CollectiveOp::all_gather, in.nbytes());
  if (size() == 1) {
    if (in.numel() > 0 && in.data_ptr() != out.data_ptr()) do_all_gather(in, out, rows);
    return;
  }
  do_all_gather(in, out, rows);
}

void Communicator::reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts) {
  check_tensor(in, "reduce_scatter input");
  check_tensor(out, "reduce_scatter output");
  LOOM_CHECK(in.dtype() != DType::u8, name_, ": reduce_scatter of u8 is not supported");
  LOOM_CHECK(in.dtype() == out.dtype() && same_row_shape(in, out), name_, ": reduce_scatter ", in.str(),
             " into ", out.str(), ": dtypes and dims after 0 must agree");
  if (counts.empty())
    LOOM_CHECK(in.size(0) % size() == 0, name_, ": reduce_scatter of ", in.size(0),
               " rows does not split evenly over ", size(), " ranks (pass counts)");
  auto rows = resolve_counts(counts, in.size(0) / size(), "reduce_scatter");
  LOOM_CHECK(in.size(0) == sum(rows), name_, ": reduce_scatter input has ", in.size(0),
             " rows, counts add up to ", sum(rows));
  LOOM_CHECK(out.size(0) == rows[rank_], name_, ": reduce_scatter output has ", out.size(0),
             " rows but counts[", rank_, "] = ", rows[rank_]);
  begin(CollectiveOp::reduce_scatter, in.nbytes());
  do_reduce_scatter(in, out, rows);
}

void Communicator::all_to_all(const Tensor& in, const std::vector<int64_t>& in_counts, Tensor& out,
                              const std::vector<int64_t>& out_counts) {
  check_tensor(in, "all_to_all input");
  check_tensor(out, "all_to_all output");
  LOOM_CHECK(in.dtype() == out.dtype() && same_row_shape(in, out), name_, ": all_to_all ", in.str(),
             " into ", out.str(), ": dtypes and dims after 0 must agree");
  auto in_rows = resolve_counts(in_counts, 0, "all_to_all");
  auto out_rows = resolve_counts(out_counts, 0, "all_to_all");
  LOOM_CHECK(!in_counts.empty() && !out_counts.empty(), name_, ": all_to_all needs per-peer counts");
  LOOM_CHECK(in.size(0) == sum(in_rows), name_, ": all_to_all input has ", in.size(0),
             " rows, in_counts add up to ", sum(in_rows));
  LOOM_CHECK(out.size(0) == sum(out_rows), name_, ": all_to_all output has ", out.size(0),
             " rows, out_counts add up to ", sum(out_rows));
  LOOM_CHECK(in_rows[rank_] == out_rows[rank_], name_, ": all_to_all sends ", in_rows[rank_],
             " rows to itself but expects ", out_rows[rank_]);
  const uint64_t row_bytes = static_cast<uint64_t>(row_elems(in)) * dtype_size(in.dtype());
  begin(CollectiveOp::all_to_all, static_cast<uint64_t>(sum(in_rows) - in_rows[rank_]) * row_bytes);
  do_all_to_all(in, in_rows, out, out_rows);
}

void Communicator::broadcast(Tensor& t, int root) {
  check_tensor(t, "broadcast");
  LOOM_CHECK(root >= 0 && root < size(), name_, ": broadcast root ", root, " outside group of ", size());
  begin(CollectiveOp::broadcast, root == rank_ ? t.nbytes() : 0);
  if (size() > 1 && t.numel() > 0) do_broadcast(t, root);
}

void Communicator::barrier() {
  begin(CollectiveOp::barrier, 0);
  if (size() > 1) do_barrier();
}

}  // namespace loom::parallel
