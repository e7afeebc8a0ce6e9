#ifdef LOOM_HAVE_CUDA
#include "loom/parallel/nccl_communicator.h"

#include <nccl.h>

#include <cstring>
#include <thread>

#include "loom/parallel/gloo_communicator.h"  // wait_for_group
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"

#define NCCL_CHECK(call)                                                                       \
  do {                                                                                         \
    ncclResult_t r_ = (call);                                                                  \
    if (r_ != ncclSuccess)                                                                     \
      throw ::loom::Error(::loom::str(this->name(), ": ", #call, " failed: ", ncclGetErrorString(r_), \
                                      " (", ncclGetLastError(this->comm_), ")"));                 \
  } while (0)

namespace loom::parallel {
namespace {

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  throw Error("unsupported dtype for NCCL");
}

char* bytes_at(const Tensor& t, int64_t byte_offset) { return static_cast<char*>(t.data_ptr()) + byte_offset; }

}  // namespace

NcclCommunicator::NcclCommunicator(std::string name, std::vector<int> ranks, int rank, Store& store,
                                   const std::string& key, int cuda_device, std::chrono::milliseconds timeout)
    : Communicator(std::move(name), std::move(ranks), rank), cuda_device_(cuda_device), timeout_(timeout) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  CUDA_CHECK(cudaMalloc(&scratch_, sizeof(int)));
  // Everyone must be there before the (blocking) NCCL init, so a missing rank is a clear error.
  wait_for_group(store, key, this->ranks(), rank, timeout, this->name());
  ncclUniqueId id;
  if (rank == 0) {
    NCCL_CHECK(ncclGetUniqueId(&id));
    store.set(key + "/unique_id", Bytes(reinterpret_cast<char*>(&id), reinterpret_cast<char*>(&id) + sizeof(id)));
  }
  store.wait({key + "/unique_id"}, timeout);
  Bytes b = store.get(key + "/unique_id");
  LOOM_CHECK(b.size() == sizeof(id), this->name(), ": NCCL unique id of ", b.size(), " bytes in the store");
  std::memcpy(&id, b.data(), sizeof(id));
  NCCL_CHECK(ncclCommInitRank(&comm_, size(), id, rank));
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) ncclCommDestroy(comm_);
  if (scratch_) cudaFree(scratch_);
}

cudaStream_t NcclCommunicator::active_stream() const {
  return stream_ ? stream_ : cuda::current_stream(cuda_device_);
}

void NcclCommunicator::do_all_reduce_sum(Tensor& t) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                           ncclSum, comm_, active_stream()));
}

void NcclCommunicator::do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  if (size() == 1) {
    CUDA_CHECK(cudaMemcpyAsync(out.data_ptr(), in.data_ptr(), in.nbytes(), cudaMemcpyDeviceToDevice, active_stream()));
    return;
  }
  bool even = true;
  for (int64_t r : rows) even = even && r == rows[0];
  if (even) {
    if (rows[0] == 0) return;
    NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), in.nbytes(), ncclUint8, comm_, active_stream()));
    return;
  }
  // Uneven: one broadcast per source rank, fused in a group.
  NCCL_CHECK(ncclGroupStart());
  int64_t offset = 0;
  for (int r = 0; r < size(); ++r) {
    const size_t n = static_cast<size_t>(rows[r] * row_bytes);
    if (n > 0)
      NCCL_CHECK(ncclBroadcast(r == rank() ? in.data_ptr() : nullptr, bytes_at(out, offset), n, ncclUint8, r, comm_,
                               active_stream()));
    offset += static_cast<int64_t>(n);
  }
  NCCL_CHECK(ncclGroupEnd());
}

void NcclCommunicator::do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  const int64_t elems = row_elems(in), esize = static_cast<int64_t>(dtype_size(in.dtype()));
  if (size() == 1) {
    if (in.numel() > 0)
      CUDA_CHECK(cudaMemcpyAsync(out.data_ptr(), in.data_ptr(), in.nbytes(), cudaMemcpyDeviceToDevice, active_stream()));
    return;
  }
  bool even = true;
  for (int64_t r : rows) even = even && r == rows[0];
  if (even) {
    if (rows[0] == 0) return;
    NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(rows[0] * elems),
                                 nccl_type(in.dtype()), ncclSum, comm_, active_stream()));
    return;
  }
  // Uneven: one reduce per destination rank, fused in a group.
  NCCL_CHECK(ncclGroupStart());
  int64_t offset = 0;
  for (int r = 0; r < size(); ++r) {
    const size_t n = static_cast<size_t>(rows[r] * elems);
    if (n > 0)
      NCCL_CHECK(ncclReduce(bytes_at(in, offset * esize), r == rank() ? out.data_ptr() : nullptr, n,
                            nccl_type(in.dtype()), ncclSum, r, comm_, active_stream()));
    offset += static_cast<int64_t>(n);
  }
  NCCL_CHECK(ncclGroupEnd());
}

void NcclCommunicator::do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                                     const std::vector<int64_t>& out_rows) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  std::vector<int64_t> in_off(size() + 1, 0), out_off(size() + 1, 0);
  for (int p = 0; p < size(); ++p) {
    in_off[p + 1] = in_off[p] + in_rows[p] * row_bytes;
    out_off[p + 1] = out_off[p] + out_rows[p] * row_bytes;
  }
  const int me = rank();
  if (in_rows[me] > 0)
    CUDA_CHECK(cudaMemcpyAsync(bytes_at(out, out_off[me]), bytes_at(in, in_off[me]), in_rows[me] * row_bytes,
                               cudaMemcpyDeviceToDevice, active_stream()));
  if (size() == 1) return;
  NCCL_CHECK(ncclGroupStart());
  for (int p = 0; p < size(); ++p) {
    if (p == me) continue;
    if (in_rows[p] > 0)
      NCCL_CHECK(ncclSend(bytes_at(in, in_off[p]), in_rows[p] * row_bytes, ncclUint8, p, comm_, active_stream()));
    if (out_rows[p] > 0)
      NCCL_CHECK(ncclRecv(bytes_at(out, out_off[p]), out_rows[p] * row_bytes, ncclUint8, p, comm_, active_stream()));
  }
  NCCL_CHECK(ncclGroupEnd());
}

void NcclCommunicator::do_broadcast(Tensor& t, int root) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.nbytes(), ncclUint8, root, comm_, active_stream()));
}

void NcclCommunicator::do_barrier() {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  NCCL_CHECK(ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, active_stream()));
  synchronize();
}

void NcclCommunicator::abort_with(const std::string& why) {
  if (comm_) ncclCommAbort(comm_);  // frees the kernels stuck waiting on a peer
  comm_ = nullptr;
  throw Error(loom::str(name(), ": ", why));
}

void NcclCommunicator::synchronize() {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  LOOM_CHECK(comm_ != nullptr, name(), ": the communicator was aborted after an earlier error");
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    const cudaError_t e = cudaStreamQuery(active_stream());
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) CUDA_CHECK(e);
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress)
      abort_with(loom::str("NCCL reported an asynchronous error: ", ncclGetErrorString(async)));
    if (std::chrono::steady_clock::now() > deadline)
      abort_with(loom::str("collectives did not finish within ", timeout_.count() / 1000.0,
                           " s (--dist-timeout); a peer rank died or stopped issuing them"));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void NcclCommunicator::do_prepare_for_capture() {
  // Nothing to warm up per collective: the communicator is fully initialized by the blocking
  // ncclCommInitRank. Make sure no work is left pending before a capture starts on this device.
  synchronize();
}

}  // namespace loom::parallel
#endif
