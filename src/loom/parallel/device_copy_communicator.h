// Device-tensor collectives between ranks that share one process, for running a parallel layout
// on fewer GPUs than ranks (NCCL refuses two ranks on one GPU). Every member publishes its buffer
// and an event, the members meet on a host barrier, and each member reads its peers' buffers with
// device copies and a summing kernel on its own stream (summing in group order, so every member
// gets the same bits); a second barrier and the peers' events keep a member from overwriting a
// buffer before its peers have read it. Host barriers cannot be captured, so CUDA graphs are off
// with this backend (prepare_for_capture throws). Selected by `--dist-backend device-copy`.
#pragma once
#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime.h>

#include <chrono>
#include <functional>
#include <memory>

#include "loom/parallel/communicator.h"
#include "loom/parallel/in_process_rendezvous.h"
#include "loom/parallel/store.h"

namespace loom::parallel {

class DeviceCopyCommunicator : public Communicator {
 public:
  // Collective over the group's members, which find each other through `key` in a process-wide
  // table (scoped by `store`, so two runs in one process never meet). Tensors live on GPU
  // `cuda_device`; a member that has not arrived within `timeout` is an error naming it.
  DeviceCopyCommunicator(std::string name, std::vector<int> ranks, int rank, const Store& store,
                         const std::string& key, int cuda_device, std::chrono::milliseconds timeout);
  ~DeviceCopyCommunicator() override;
  Device device() const override { return Device::cuda(cuda_device_); }
  void abort() override;

 protected:
  void do_all_reduce_sum(Tensor& t) override;
  void do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) override;
  void do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) override;
  void do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                     const std::vector<int64_t>& out_rows) override;
  void do_broadcast(Tensor& t, int root) override;
  void do_barrier() override;
  void do_prepare_for_capture() override;

 public:
  struct Shared;  // the group's meeting point (device_copy_communicator.cc)

 private:
  // Publishes `mine`, waits for every member, lets `read` enqueue this member's reads of the
  // others' buffers, then orders this stream after every member's reads.
  void exchange(const void* data, const std::vector<int64_t>& rows,
                const std::function<void(const std::vector<InProcessPost>&, cudaStream_t)>& read);

  int cuda_device_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<Shared> shared_;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;  // owned by shared_
};

}  // namespace loom::parallel
#endif
