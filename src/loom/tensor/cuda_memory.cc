// Device memory: a caching allocator per GPU (cudaMalloc underneath, blocks reused by size)
// and byte copies between host and device.
#include <cstring>
#include <map>
#include <mutex>

#include "loom/tensor/allocator.h"
#include "loom/tensor/error.h"

#ifdef LOOM_HAVE_CUDA
#include <cuda_runtime.h>

#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"

namespace loom {

// Free blocks of one CUDA-graph pool (by size); its blocks never leave it while it lives. Every
// live block holds the pool, so when the last reference goes every block is free: back to the
// driver then (a runner's graphs and their memory go together).
class GraphMemoryPool {
 public:
  std::multimap<size_t, void*> free;
  ~GraphMemoryPool() {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;  // also from a thread that is capturing
    cudaThreadExchangeStreamCaptureMode(&mode);
    for (auto& [size, p] : free) cudaFree(p);  // waits for the work that may still read them
    cudaThreadExchangeStreamCaptureMode(&mode);
  }
};

namespace {

thread_local std::shared_ptr<GraphMemoryPool> t_graph_pool;

// Frees are kept in size buckets and handed out again; memory returns to the driver only in
// empty_cache(). Sizes round up to 512 bytes (small) or 2 MiB (large) so blocks are reusable.
// A freed block is reused only by the stream it was allocated on: work queued on that stream may
// still read it, and stream order is what makes the reuse safe. Ranks that share a GPU each have
// their own stream (runtime/parallel_runner), so one rank never gets a block another still uses.
class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    const size_t size = round(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    GraphMemoryPool* pool = t_graph_pool.get();
    const cudaStream_t stream = cuda::current_stream(device_);
    auto& free_list = pool ? pool->free : free_[stream];
    auto it = free_list.lower_bound(size);
    if (it != free_list.end() && it->first <= size * 2) {
      void* p = it->second;
      const size_t got = it->first;
      free_list.erase(it);
      live_[p] = Block{got, pool ? t_graph_pool : nullptr, stream};
      return p;
    }
    CUDA_CHECK(cudaSetDevice(device_));
    // A CUDA-graph capture (thread-local mode) forbids cudaMalloc on this thread; allocating a graph
    // pool's block is safe, so relax the mode for this call only (what PyTorch's allocator does).
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_cached();
      err = cudaMalloc(&p, size);
    }
    CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      if (err == cudaErrorMemoryAllocation)
        throw Error(str("out of GPU memory on cuda:", device_, ": needed ", size, " bytes, ", free_b,
                        " free of ", total_b));
      throw Error(str("cudaMalloc of ", size, " bytes on cuda:", device_, " failed: ", cudaGetErrorString(err)));
    }
    live_[p] = Block{size, pool ? t_graph_pool : nullptr, stream};
    return p;
  }

  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    CUDA_CHECK(cudaSetDevice(device_));
    CUDA_CHECK(cudaDeviceSynchronize());  // cached blocks may still be read by queued work
    release_cached();
  }

  void deallocate(void* p, size_t) override {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    auto& free_list = it->second.pool ? it->second.pool->free : free_[it->second.stream];
    free_list.emplace(it->second.size, p);
    live_.erase(it);
  }

 private:
  static size_t round(size_t n) {
    const size_t q = n < (1u << 20) ? 512 : (2u << 20);
    return (n + q - 1) / q * q;
  }
  void release_cached() {
    for (auto& [stream, blocks] : free_)
      for (auto& [size, p] : blocks) cudaFree(p);
    free_.clear();
  }

  int device_;
  std::mutex mu_;
  std::map<cudaStream_t, std::multimap<size_t, void*>> free_;  // by the stream that allocated
  struct Block {
    size_t size;
    std::shared_ptr<GraphMemoryPool> pool;  // null: the general cache
    cudaStream_t stream;
  };
  std::map<void*, Block> live_;
};

}  // namespace

Allocator& device_allocator(const Device& d) {
  LOOM_CHECK(d.is_cuda(), "device_allocator called for ", d.str());
  static std::mutex mu;
  static std::map<int, CudaCachingAllocator*> allocators;  // live for the process
  std::lock_guard<std::mutex> lock(mu);
  auto& a = allocators[d.index];
  if (!a) a = new CudaCachingAllocator(d.index);
  return *a;
}

std::shared_ptr<GraphMemoryPool> make_graph_memory_pool() { return std::make_shared<GraphMemoryPool>(); }

void release_cached_device_memory(const Device& d) {
  static_cast<CudaCachingAllocator&>(device_allocator(d)).release();
}

GraphPoolGuard::GraphPoolGuard(std::shared_ptr<GraphMemoryPool> pool)
    : pool_(std::move(pool)), previous_(t_graph_pool) {
  t_graph_pool = pool_;
}
GraphPoolGuard::~GraphPoolGuard() { t_graph_pool = previous_; }

void zero_device_bytes(void* dst, const Device& dev, size_t n) {
  if (n == 0) return;
  CUDA_CHECK(cudaSetDevice(dev.index));
  CUDA_CHECK(cudaMemsetAsync(dst, 0, n, cuda::current_stream(dev.index)));
}

void copy_bytes(void* dst, const Device& dd, const void* src, const Device& sd, size_t n) {
  if (n == 0) return;
  if (dd.is_cpu() && sd.is_cpu()) {
    std::memcpy(dst, src, n);
    return;
  }
  CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyDefault));
}

}  // namespace loom

#else

namespace loom {
class GraphMemoryPool {};
std::shared_ptr<GraphMemoryPool> make_graph_memory_pool() { return std::make_shared<GraphMemoryPool>(); }
GraphPoolGuard::GraphPoolGuard(std::shared_ptr<GraphMemoryPool> pool) : pool_(std::move(pool)) {}
GraphPoolGuard::~GraphPoolGuard() = default;
void release_cached_device_memory(const Device&) {}
void zero_device_bytes(void*, const Device& dev, size_t) {
  throw Error(str("device ", dev.str(), " requested but loom was built without the CUDA backend"));
}
void copy_bytes(void* dst, const Device& dd, const void* src, const Device& sd, size_t n) {
  LOOM_CHECK(dd.is_cpu() && sd.is_cpu(), "copy to/from ", (dd.is_cpu() ? sd : dd).str(),
             " but loom was built without the CUDA backend");
  if (n) std::memcpy(dst, src, n);
}
}  // namespace loom

#endif
