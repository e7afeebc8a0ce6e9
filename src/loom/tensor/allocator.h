// Memory comes from an Allocator per device; kernels never allocate behind the caller's back.
#pragma once
#include <cstddef>
#include <memory>

#include "loom/tensor/device.h"

namespace loom {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
};

// 64-byte aligned host memory.
Allocator& host_allocator();

// The caching device allocator of GPU `index`; throws when loom was built without CUDA.
Allocator& device_allocator(const Device& d);

}  // namespace loom

namespace loom {
// Copies bytes between any two devices (host<->device through cudaMemcpy, synchronous).
void copy_bytes(void* dst, const Device& dst_dev, const void* src, const Device& src_dev, size_t n);

// Returns the device allocator's cached free blocks (not graph pools) to the driver.
void release_cached_device_memory(const Device& d);

// Zeroes n bytes of device memory (on the current stream; capturable).
void zero_device_bytes(void* dst, const Device& dev, size_t n);

// CUDA-graph memory. While a GraphPoolGuard lives, the calling thread's device allocations come
// from `pool` and go back to it when freed (also after the guard ends), never to the general
// cache: a captured graph's intermediates keep addresses no other tensor will ever get. Graphs
// that replay one at a time may share one pool.
class GraphMemoryPool;
std::shared_ptr<GraphMemoryPool> make_graph_memory_pool();
class GraphPoolGuard {
 public:
  explicit GraphPoolGuard(std::shared_ptr<GraphMemoryPool> pool);
  ~GraphPoolGuard();
  GraphPoolGuard(const GraphPoolGuard&) = delete;
  GraphPoolGuard& operator=(const GraphPoolGuard&) = delete;

 private:
  std::shared_ptr<GraphMemoryPool> pool_, previous_;
};
}  // namespace loom
