// The paged KV pool: every layer's K/V storage, cut into pages of page_size tokens, and the
// exact accounting of which pages are free. Page 0 is reserved as the scratch page that padded
// (CUDA-graph) slots write to, so it is never handed out.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "loom/tensor/kv_buffers.h"

namespace loom::cache {

class KvPool {
 public:
  KvPool(const KvLayout& layout, int64_t num_pages, int64_t page_size, Device device);

  // How many pages of `page_size` tokens fit in `bytes`.
  static int64_t pages_that_fit(const KvLayout& layout, int64_t page_size, int64_t bytes);

  // All `n` pages or none.
  std::optional<std::vector<int32_t>> allocate(int64_t n);
  void free(const std::vector<int32_t>& pages);

  int64_t num_pages() const { return num_pages_; }     // usable pages (page 0 excluded)
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t page_size() const { return buffers_.page_size; }
  int64_t pages_for_tokens(int64_t tokens) const { return (tokens + page_size() - 1) / page_size(); }
  const KvBuffers& buffers() const { return buffers_; }
  const KvLayout& layout() const { return layout_; }

 private:
  KvLayout layout_;
  int64_t num_pages_;
  KvBuffers buffers_;
  std::vector<int32_t> free_;     // a stack of free page ids
  std::vector<uint8_t> in_use_;   // double-free / foreign-page detection
};

}  // namespace loom::cache
