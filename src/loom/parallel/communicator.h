// A communicator for one group of ranks. The public calls check their arguments (shapes, counts,
// dtypes, devices), the CUDA-graph capture rules and count bytes; backends (Gloo for host tensors,
// NCCL for device tensors) implement the do_* hooks. Every tensor is contiguous; "along dim 0"
// means rows: counts are numbers of rows, and the other dims must agree.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "loom/parallel/peer_failure.h"
#include "loom/tensor/tensor.h"

namespace loom::parallel {

enum class CollectiveOp { all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, barrier };
inline constexpr int kNumCollectiveOps = 6;
const char* op_name(CollectiveOp op);

class Communicator {
 public:
  // `ranks`: the group's global ranks in group order; `rank`: this rank's index in them.
  Communicator(std::string name, std::vector<int> ranks, int rank);
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(ranks_.size()); }
  const std::vector<int>& ranks() const { return ranks_; }
  const std::string& name() const { return name_; }  // "tp [0, 1, 2, 3] (gloo)"
  virtual Device device() const = 0;                 // where its tensors live

  // Sum over the group, in place. f32, bf16 (accumulated in f32 on the host), i32, i64.
  void all_reduce_sum(Tensor& t);
  // out = concat over ranks of each rank's `in`. counts[r] = rows of rank r (empty: all equal).
  void all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts = {});
  // Sums `in` over the group, then this rank keeps rows [offset_r, offset_r + counts[r]) in `out`.
  void reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& counts = {});
  // Rows in[offset_p, +in_counts[p]) go to peer p; out receives out_counts[p] rows from p, in order.
  void all_to_all(const Tensor& in, const std::vector<int64_t>& in_counts, Tensor& out,
                  const std::vector<int64_t>& out_counts);
  void broadcast(Tensor& t, int root);
  void barrier();

  // Called by a rank that failed, once it stopped using this communicator: the peers' collectives
  // with this rank, in flight or later, fail with an error instead of waiting --dist-timeout for
  // it. The communicator is unusable afterwards. Backends that cannot abort leave this a no-op.
  virtual void abort() {}

  // Payload bytes this rank put into each kind of collective (independent of the algorithm):
  // all_reduce: the tensor; all_gather: its input; reduce_scatter: its input; all_to_all: the rows
  // sent to other peers; broadcast: the tensor when root. For a later issue's traffic measurements.
  uint64_t bytes_sent(CollectiveOp op) const { return bytes_[static_cast<int>(op)]; }
  uint64_t calls(CollectiveOp op) const { return calls_[static_cast<int>(op)]; }
  uint64_t sequence() const { return sequence_; }  // collectives issued so far
  void reset_counters();

  // CUDA-graph capture: a communicator a capture may touch must have been prepared through the
  // GraphRegistry. Throws loom::Error when the calling thread is capturing and this one was not.
  void check_capture_allowed() const;
  void prepare_for_capture();  // called by the GraphRegistry
  bool prepared_for_capture() const { return capture_prepared_; }

 protected:
  virtual void do_all_reduce_sum(Tensor& t) = 0;
  virtual void do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) = 0;
  virtual void do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) = 0;
  virtual void do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                             const std::vector<int64_t>& out_rows) = 0;
  virtual void do_broadcast(Tensor& t, int root) = 0;
  virtual void do_barrier() = 0;
  virtual void do_prepare_for_capture() {}

  // Elements per row of t (product of dims 1..).
  static int64_t row_elems(const Tensor& t);

 private:
  void begin(CollectiveOp op, uint64_t bytes);
  void check_tensor(const Tensor& t, const char* what) const;
  std::vector<int64_t> resolve_counts(const std::vector<int64_t>& counts, int64_t equal_rows,
                                      const char* op) const;

  std::string name_;
  std::vector<int> ranks_;
  int rank_;
  bool capture_prepared_ = false;
  uint64_t sequence_ = 0;
  std::array<uint64_t, kNumCollectiveOps> bytes_{}, calls_{};
};

}  // namespace loom::parallel
