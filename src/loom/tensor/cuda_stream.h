// The stream device work is issued on, per thread and GPU, plus events and the cuBLAS handle.
// Every kernel and library call of the CUDA backend goes to current_stream(): a blocking
// stream (it orders with the synchronous host copies of tensor/), and one that can be captured
// into a CUDA graph (the legacy default stream cannot).
#pragma once
#ifdef LOOM_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "loom/tensor/device.h"

namespace loom::cuda {

cudaStream_t current_stream(int device = -1);  // -1: the thread's current device
void synchronize();                            // waits for current_stream()

// Makes `s` the calling thread's current stream while alive.
class StreamGuard {
 public:
  explicit StreamGuard(cudaStream_t s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t previous_;
};

// Ends a capture in progress on `s`, if any, dropping what it captured and the error it left, so
// that the stream is usable again after a capture that threw.
void abandon_capture(cudaStream_t s);

// An owned, non-default stream.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// A timing event.
class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s);
  void synchronize();
  float ms_since(const Event& start) const;  // both recorded and complete
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// The calling thread's cuBLAS handle for the current device, bound to current_stream(), with a
// fixed workspace (so calls need no allocation and can be captured).
cublasHandle_t cublas_handle();

// GPUs visible to this process (0 when the driver reports none or fails).
int device_count();

// Free and total bytes of device d, the caching allocator's free blocks returned to the driver
// first (a device sync): they would count as used, among them those cached for the streams of
// threads that have ended, which no one reuses. What the KV pool's sizing reads.
struct MemInfo {
  size_t free = 0, total = 0;
};
MemInfo mem_info(const Device& d);

}  // namespace loom::cuda
#endif
