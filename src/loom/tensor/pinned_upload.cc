#include "loom/tensor/pinned_upload.h"

#include "loom/tensor/env.h"
#include "loom/tensor/error.h"

#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime.h>

#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom {

bool pinned_load_enabled() {
  return !env_is("LOOM_PINNED_LOAD", "0");
}

#ifdef LOOM_HAVE_CUDA

struct PinnedUploader::Slot {
  void* host = nullptr;
  cudaEvent_t done = nullptr;
  bool pending = false;  // a copy from this buffer was queued after the last wait
};

PinnedUploader::PinnedUploader(Device device, size_t buffer_bytes, int buffers)
    : device_(device), buffer_bytes_(buffer_bytes), count_(buffers) {
  LOOM_CHECK(device.is_cuda(), "PinnedUploader: ", device.str(), " is not a GPU");
  LOOM_CHECK(buffer_bytes > 0 && buffers >= 2, "PinnedUploader: ", buffers, " buffers of ", buffer_bytes,
             " bytes (at least 2 buffers)");
}

PinnedUploader::~PinnedUploader() {
  for (auto& s : slots_) {  // no throwing here: a failed wait still frees what it can
    if (s->done) {
      if (s->pending) cudaEventSynchronize(s->done);
      cudaEventDestroy(s->done);
    }
    if (s->host) cudaFreeHost(s->host);
  }
}

void PinnedUploader::reserve() {
  CUDA_CHECK(cudaSetDevice(device_.index));
  while (static_cast<int>(slots_.size()) < count_) {
    auto s = std::make_unique<Slot>();
    slots_.push_back(std::move(s));  // owned before the allocations, so the destructor frees them
    CUDA_CHECK(cudaHostAlloc(&slots_.back()->host, buffer_bytes_, cudaHostAllocDefault));
    CUDA_CHECK(cudaEventCreateWithFlags(&slots_.back()->done, cudaEventDisableTiming));
  }
}

void PinnedUploader::upload(void* dst, size_t n, const std::function<void(void*)>& fill) {
  LOOM_CHECK(n <= buffer_bytes_, "PinnedUploader: a piece of ", n, " bytes for buffers of ", buffer_bytes_);
  if (n == 0) return;
  reserve();
  Slot& s = *slots_[next_];
  next_ = (next_ + 1) % count_;
  if (s.pending) {
    CUDA_CHECK(cudaEventSynchronize(s.done));  // its previous copy has left the buffer
    s.pending = false;
  }
  fill(s.host);
  cudaStream_t stream = cuda::current_stream(device_.index);
  CUDA_CHECK(cudaMemcpyAsync(dst, s.host, n, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaEventRecord(s.done, stream));
  s.pending = true;
}

void PinnedUploader::finish() {
  for (auto& s : slots_)
    if (s->pending) {
      CUDA_CHECK(cudaEventSynchronize(s->done));
      s->pending = false;
    }
}

#else

struct PinnedUploader::Slot {};

PinnedUploader::PinnedUploader(Device device, size_t buffer_bytes, int buffers)
    : device_(device), buffer_bytes_(buffer_bytes), count_(buffers) {
  throw Error(str("device ", device.str(), " requested but loom was built without the CUDA backend"));
}
PinnedUploader::~PinnedUploader() = default;
void PinnedUploader::reserve() {}
void PinnedUploader::upload(void*, size_t, const std::function<void(void*)>&) {}
void PinnedUploader::finish() {}

#endif

}  // namespace loom
