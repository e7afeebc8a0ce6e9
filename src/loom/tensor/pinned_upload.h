// Host-to-device uploads through a ring of pinned (page-locked) staging buffers: the caller fills
// buffer i + 1 on the host (reading a checkpoint, converting dtypes) while buffer i is copied to the
// GPU by DMA, so loading runs at the slower of the two instead of their sum, and the copies come
// from pinned memory (a pageable source is staged by the driver through its own small buffers,
// synchronously). A buffer is refilled only after its last copy has completed (an event per buffer).
// Copies go to the calling thread's current stream for the device, so work queued after them on
// that stream sees the data; finish() (or the destructor) waits for all of them.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "loom/tensor/device.h"

namespace loom {

class PinnedUploader {
 public:
  // `buffers` pinned buffers of `buffer_bytes` each, allocated on first use.
  explicit PinnedUploader(Device device, size_t buffer_bytes = size_t{64} << 20, int buffers = 4);
  ~PinnedUploader();
  PinnedUploader(const PinnedUploader&) = delete;
  PinnedUploader& operator=(const PinnedUploader&) = delete;

  size_t buffer_bytes() const { return buffer_bytes_; }
  void reserve();  // allocates every buffer now (throws what cudaHostAlloc reports)
  // Copies n <= buffer_bytes() bytes to `dst` (memory of the device): fill(staging) writes them
  // into a pinned buffer first. Returns once the copy is queued.
  void upload(void* dst, size_t n, const std::function<void(void* staging)>& fill);
  void finish();  // every queued copy has completed

 private:
  struct Slot;
  Device device_;
  size_t buffer_bytes_;
  int count_;
  int next_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;
};

// Whether checkpoint loads onto a GPU go through a PinnedUploader: yes unless LOOM_PINNED_LOAD=0
// (measured on the H200: a warm 21 GB start 4.4 -> 3.4 s, a cold one disk-bound either way;
// bench/NOTES.md).
bool pinned_load_enabled();

}  // namespace loom
