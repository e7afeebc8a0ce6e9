#ifdef LOOM_HAVE_CUDA
#include "loom/parallel/device_copy_communicator.h"

#include <functional>
#include <mutex>

#include "loom/kernels/cuda/parallel.h"
#include "loom/parallel/in_process_rendezvous.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"

namespace loom::parallel {

// The group's rendezvous, and each member's ready and done events, made when it joins and fixed from
// then on. A member's events outlive it: a peer leaving its last collective may still enqueue a
// wait on them after this member returned, so they go when the last member does.
struct DeviceCopyCommunicator::Shared : InProcessRendezvous {
  explicit Shared(int size) : InProcessRendezvous(size), events(size) {}
  ~Shared() override {
    for (auto& [ready, done] : events) {
      if (ready) cudaEventDestroy(ready);
      if (done) cudaEventDestroy(done);
    }
  }
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> events;
};

namespace {

kernels::cuda::SumType sum_type(DType d) {
  switch (d) {
    case DType::f32: return kernels::cuda::SumType::f32;
    case DType::bf16: return kernels::cuda::SumType::bf16;
    case DType::i32: return kernels::cuda::SumType::i32;
    case DType::i64: return kernels::cuda::SumType::i64;
    default: throw Error(str("device-copy all-reduce: unsupported dtype ", dtype_name(d)));
  }
}

const char* at(const void* p, int64_t bytes) { return static_cast<const char*>(p) + bytes; }

}  // namespace

DeviceCopyCommunicator::DeviceCopyCommunicator(std::string name, std::vector<int> ranks, int rank, const Store& store,
                                               const std::string& key, int cuda_device,
                                               std::chrono::milliseconds timeout)
    : Communicator(std::move(name), std::move(ranks), rank), cuda_device_(cuda_device), timeout_(timeout) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  shared_ = join_in_process<Shared>(str(static_cast<const void*>(&store), "/", key), size());
  std::unique_lock<std::mutex> lock(shared_->mu);
  auto& [ready, done] = shared_->events[this->rank()];
  if (!ready) {
    CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  }
  ready_ = ready;
  done_ = done;
  shared_->join(lock, this->rank(), this->name(), this->ranks(), timeout_,
                "the device-copy backend needs every rank in this process");
}

DeviceCopyCommunicator::~DeviceCopyCommunicator() = default;

void DeviceCopyCommunicator::abort() { shared_->abort(); }

void DeviceCopyCommunicator::exchange(const void* data, const std::vector<int64_t>& rows,
                                      const std::function<void(const std::vector<InProcessPost>&, cudaStream_t)>& read) {
  CUDA_CHECK(cudaSetDevice(cuda_device_));
  const cudaStream_t s = cuda::current_stream(cuda_device_);
  CUDA_CHECK(cudaEventRecord(ready_, s));
  // Every member's buffer is published.
  const std::vector<InProcessPost> all = shared_->post_and_meet(rank(), InProcessPost{data, rows, {}}, name(), timeout_);
  for (int p = 0; p < size(); ++p)
    if (p != rank()) CUDA_CHECK(cudaStreamWaitEvent(s, shared_->events[p].first, 0));
  read(all, s);
  CUDA_CHECK(cudaEventRecord(done_, s));
  shared_->meet(name(), timeout_);  // every member has enqueued its reads
  for (int p = 0; p < size(); ++p)
    if (p != rank()) CUDA_CHECK(cudaStreamWaitEvent(s, shared_->events[p].second, 0));
}

void DeviceCopyCommunicator::do_all_reduce_sum(Tensor& t) {
  // Sum into scratch first: the peers read t until the exchange ends.
  Tensor sum = Tensor::empty(t.shape(), t.dtype(), t.device());
  exchange(t.data_ptr(), {}, [&](const std::vector<InProcessPost>& all, cudaStream_t s) {
    kernels::cuda::SumSources src;
    for (const InProcessPost& p : all) src.p[src.n++] = p.data;
    kernels::cuda::sum_buffers(src, sum.data_ptr(), t.numel(), sum_type(t.dtype()), s);
  });
  if (t.nbytes())
    CUDA_CHECK(cudaMemcpyAsync(t.data_ptr(), sum.data_ptr(), t.nbytes(), cudaMemcpyDeviceToDevice,
                               cuda::current_stream(cuda_device_)));
}

void DeviceCopyCommunicator::do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  exchange(in.data_ptr(), {}, [&](const std::vector<InProcessPost>& all, cudaStream_t s) {
    int64_t offset = 0;
    for (int p = 0; p < size(); ++p) {
      if (rows[p] > 0)
        CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(out.data_ptr()) + offset, all[p].data, rows[p] * row_bytes,
                                   cudaMemcpyDeviceToDevice, s));
      offset += rows[p] * row_bytes;
    }
  });
}

void DeviceCopyCommunicator::do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) {
  const int64_t elems = row_elems(in), esize = static_cast<int64_t>(dtype_size(in.dtype()));
  int64_t first = 0;
  for (int p = 0; p < rank(); ++p) first += rows[p];
  exchange(in.data_ptr(), {}, [&](const std::vector<InProcessPost>& all, cudaStream_t s) {
    kernels::cuda::SumSources src;
    for (const InProcessPost& p : all) src.p[src.n++] = at(p.data, first * elems * esize);
    kernels::cuda::sum_buffers(src, out.data_ptr(), rows[rank()] * elems, sum_type(in.dtype()), s);
  });
}

void DeviceCopyCommunicator::do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                                           const std::vector<int64_t>& out_rows) {
  const int64_t row_bytes = row_elems(in) * static_cast<int64_t>(dtype_size(in.dtype()));
  exchange(in.data_ptr(), in_rows, [&](const std::vector<InProcessPost>& all, cudaStream_t s) {
    int64_t offset = 0;
    for (int p = 0; p < size(); ++p) {
      int64_t from = 0;  // where p's rows for this member start in p's buffer
      for (int q = 0; q < rank(); ++q) from += all[p].rows[q];
      LOOM_CHECK(all[p].rows[rank()] == out_rows[p], name(), ": all_to_all: rank ", ranks()[p], " sends ",
                 all[p].rows[rank()], " rows, this rank expects ", out_rows[p]);
      if (out_rows[p] > 0)
        CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(out.data_ptr()) + offset, at(all[p].data, from * row_bytes),
                                   out_rows[p] * row_bytes, cudaMemcpyDeviceToDevice, s));
      offset += out_rows[p] * row_bytes;
    }
  });
}

void DeviceCopyCommunicator::do_broadcast(Tensor& t, int root) {
  exchange(t.data_ptr(), {}, [&](const std::vector<InProcessPost>& all, cudaStream_t s) {
    if (rank() != root && t.nbytes())
      CUDA_CHECK(cudaMemcpyAsync(t.data_ptr(), all[root].data, t.nbytes(), cudaMemcpyDeviceToDevice, s));
  });
}

void DeviceCopyCommunicator::do_barrier() {
  exchange(nullptr, {}, [](const std::vector<InProcessPost>&, cudaStream_t) {});
  CUDA_CHECK(cudaStreamSynchronize(cuda::current_stream(cuda_device_)));
}

void DeviceCopyCommunicator::do_prepare_for_capture() {
  throw Error(str(name(), ": the device-copy backend meets on host barriers, which a CUDA graph cannot capture; "
                          "run with --disable-cuda-graph, or --dist-backend nccl with one GPU per rank"));
}

}  // namespace loom::parallel
#endif
