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

namespace loom {
namespace {

// Frees are kept in size buckets and handed out again; memory returns to the driver only in
// empty_cache(). Sizes round up to 512 bytes (small) or 2 MiB (large) so blocks are reusable.
class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    const size_t size = round(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= size * 2) {
      void* p = it->second;
      free_.erase(it);
      live_[p] = size;
      return p;
    }
    CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      release_cached();
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Error(str("out of GPU memory on cuda:", device_, ": needed ", size, " bytes, ", free_b,
                      " free of ", total_b));
    }
    live_[p] = size;
    return p;
  }

  void deallocate(void* p, size_t) override {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    free_.emplace(it->second, p);
    live_.erase(it);
  }

 private:
  static size_t round(size_t n) {
    const size_t q = n < (1u << 20) ? 512 : (2u << 20);
    return (n + q - 1) / q * q;
  }
  void release_cached() {
    for (auto& [size, p] : free_) cudaFree(p);
    free_.clear();
  }

  int device_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::map<void*, size_t> live_;
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
void copy_bytes(void* dst, const Device& dd, const void* src, const Device& sd, size_t n) {
  LOOM_CHECK(dd.is_cpu() && sd.is_cpu(), "copy to/from ", (dd.is_cpu() ? sd : dd).str(),
             " but loom was built without the CUDA backend");
  if (n) std::memcpy(dst, src, n);
}
}  // namespace loom

#endif
