#include "loom/tensor/cuda_stream.h"

#ifdef LOOM_HAVE_CUDA
#include <map>

#include "loom/tensor/allocator.h"
#include "loom/tensor/cuda_check.h"

namespace loom::cuda {
namespace {

int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// Per thread: the guarded stream (if any) and one lazily created blocking stream per device.
thread_local cudaStream_t t_override = nullptr;
thread_local std::map<int, cudaStream_t> t_streams;

}  // namespace

cudaStream_t current_stream(int device) {
  if (t_override) return t_override;
  const int d = device < 0 ? current_device() : device;
  auto& s = t_streams[d];
  if (!s) {
    CUDA_CHECK(cudaSetDevice(d));
    CUDA_CHECK(cudaStreamCreate(&s));  // blocking: ordered with cudaMemcpy on the legacy stream
  }
  return s;
}

void synchronize() { CUDA_CHECK(cudaStreamSynchronize(current_stream())); }

StreamGuard::StreamGuard(cudaStream_t s) : previous_(t_override) { t_override = s; }
StreamGuard::~StreamGuard() { t_override = previous_; }

void abandon_capture(cudaStream_t s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
  }
  (void)cudaGetLastError();
}

Stream::Stream() { CUDA_CHECK(cudaStreamCreate(&s_)); }
Stream::~Stream() { cudaStreamDestroy(s_); }

Event::Event() { CUDA_CHECK(cudaEventCreate(&e_)); }
Event::~Event() { cudaEventDestroy(e_); }
void Event::record(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(e_, s)); }
void Event::synchronize() { CUDA_CHECK(cudaEventSynchronize(e_)); }
float Event::ms_since(const Event& start) const {
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
  return ms;
}

cublasHandle_t cublas_handle() {
  // Freed when the thread ends: ranks run on threads of their own, and a process that starts runners
  // again and again (the parity tests, hundreds of them on one GPU) lost a handle and 32 MiB a rank
  // thread, until sizing a KV pool found the GPU full.
  struct Handle {
    cublasHandle_t h = nullptr;
    void* workspace = nullptr;
    Handle() = default;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() {
      if (h) cublasDestroy(h);
      if (workspace) cudaFree(workspace);
    }
  };
  constexpr size_t kWorkspace = 32u << 20;
  thread_local std::map<int, Handle> handles;  // live for the thread
  const int d = current_device();
  Handle& h = handles[d];
  if (!h.h) {
    CUBLAS_CHECK(cublasCreate(&h.h));
    CUDA_CHECK(cudaMalloc(&h.workspace, kWorkspace));
    CUBLAS_CHECK(cublasSetWorkspace(h.h, h.workspace, kWorkspace));
    CUBLAS_CHECK(cublasSetMathMode(h.h, CUBLAS_DEFAULT_MATH));
  }
  CUBLAS_CHECK(cublasSetStream(h.h, current_stream(d)));
  return h.h;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

MemInfo mem_info(const Device& d) {
  release_cached_device_memory(d);
  CUDA_CHECK(cudaSetDevice(d.index));
  MemInfo m;
  CUDA_CHECK(cudaMemGetInfo(&m.free, &m.total));
  return m;
}

}  // namespace loom::cuda
#endif
