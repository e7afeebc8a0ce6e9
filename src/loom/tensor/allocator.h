// Memory comes from an Allocator per device; kernels never allocate behind the caller's back.
#pragma once
#include <cstddef>

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
}  // namespace loom
