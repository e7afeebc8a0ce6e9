// A layer's view of one communication group: the collectives the layers use, each a no-op (or a
// copy) when the group is a single rank, so the single-rank model is the degenerate case of the
// parallel one. Counts are rows along dim 0, one per member in group order.
#pragma once
#include <memory>
#include <vector>

#include "loom/parallel/communicator.h"
#include "loom/tensor/tensor.h"

namespace loom::layers {

class Group {
 public:
  Group() = default;  // a group of one
  // `comm` moves the tensors (NCCL on CUDA, Gloo on the host); `cpu` (Gloo) the small host-side
  // values such as counts; null: the same as `comm`.
  explicit Group(std::shared_ptr<parallel::Communicator> comm, std::shared_ptr<parallel::Communicator> cpu = nullptr)
      : comm_(std::move(comm)), cpu_(cpu ? std::move(cpu) : comm_) {}

  int rank() const { return comm_ ? comm_->rank() : 0; }
  int size() const { return comm_ ? comm_->size() : 1; }
  bool alone() const { return size() == 1; }
  parallel::Communicator* comm() const { return comm_.get(); }
  const std::shared_ptr<parallel::Communicator>& shared_comm() const { return comm_; }

  void all_reduce(Tensor& t) const;
  // Concatenation over members of each member's `x` (counts[m] rows from member m).
  Tensor all_gather(const Tensor& x, const std::vector<int64_t>& counts) const;
  // Sum of every member's `x` [Σ counts, ...]; this member keeps its counts[rank()] rows.
  Tensor reduce_scatter(const Tensor& x, const std::vector<int64_t>& counts) const;
  // Rows x[offset_p, + send[p]) go to member p; returns Σ recv rows, member by member.
  Tensor all_to_all(const Tensor& x, const std::vector<int64_t>& send, const std::vector<int64_t>& recv) const;
  // Every member's `mine` (one value each), in member order.
  std::vector<int64_t> all_gather_values(const std::vector<int64_t>& mine) const;

 private:
  std::shared_ptr<parallel::Communicator> comm_, cpu_;
};

// Splits [0, n) into `parts` near-equal contiguous ranges; part p is [n·p/parts, n·(p+1)/parts).
struct Range {
  int64_t begin = 0, length = 0;
};
Range split_range(int64_t n, int parts, int part);
std::vector<int64_t> split_counts(int64_t n, int parts);

}  // namespace loom::layers
