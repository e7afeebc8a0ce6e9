// Device-tensor communicator on NCCL; collectives are enqueued on the communicator's stream.
// Built only with CUDA (LOOM_HAVE_CUDA). Every NCCL/CUDA call is checked: the failing call and the
// error string go into the exception.
#pragma once
#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime.h>

#include <chrono>

#include "loom/parallel/communicator.h"
#include "loom/parallel/store.h"

typedef struct ncclComm* ncclComm_t;

namespace loom::parallel {

class NcclCommunicator : public Communicator {
 public:
  // Collective over the group: member 0 publishes the NCCL unique id under `key` in the store; the
  // others wait for it (up to `timeout`, naming missing ranks). Uses GPU `cuda_device`.
  NcclCommunicator(std::string name, std::vector<int> ranks, int rank, Store& store, const std::string& key,
                   int cuda_device, std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;
  Device device() const override { return Device::cuda(cuda_device_); }

  // Collectives run on this stream (default: the calling thread's current stream on the
  // communicator's GPU, tensor/cuda_stream.h, so a capture records them). The caller synchronizes.
  void set_stream(cudaStream_t s) { stream_ = s; }
  cudaStream_t stream() const { return stream_; }
  // Waits for the stream's work while watching NCCL for errors. A collective that has not finished
  // within the timeout (a peer died or stopped) aborts the communicator and throws, never hangs.
  void synchronize();

 protected:
  void do_all_reduce_sum(Tensor& t) override;
  void do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) override;
  void do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) override;
  void do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                     const std::vector<int64_t>& out_rows) override;
  void do_broadcast(Tensor& t, int root) override;
  void do_barrier() override;
  void do_prepare_for_capture() override;

 private:
  [[noreturn]] void abort_with(const std::string& why);
  cudaStream_t active_stream() const;

  int cuda_device_;
  std::chrono::milliseconds timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;  // one int for barrier()
};

}  // namespace loom::parallel
#endif
