#include "loom/cache/kv_pool.h"

#include "loom/tensor/error.h"

namespace loom::cache {

KvPool::KvPool(const KvLayout& layout, int64_t num_pages, int64_t page_size, Device device)
    : layout_(layout), num_pages_(num_pages) {
  LOOM_CHECK(num_pages >= 1 && page_size >= 1, "KV pool needs at least one page (got ", num_pages,
             " pages of ", page_size, " tokens)");
  const int64_t slots = (num_pages + 1) * page_size;  // + the reserved page 0
  buffers_.page_size = page_size;
  for (int64_t l = 0; l < layout.num_layers; ++l) {
    buffers_.k.push_back(Tensor::zeros({slots, layout.kv_heads, layout.k_dim}, layout.dtype, device));
    buffers_.v.push_back(Tensor::zeros({slots, layout.kv_heads, layout.v_dim}, layout.dtype, device));
  }
  in_use_.assign(static_cast<size_t>(num_pages + 1), 0);
  in_use_[0] = 1;
  for (int64_t p = num_pages; p >= 1; --p) free_.push_back(static_cast<int32_t>(p));
}

int64_t KvPool::pages_that_fit(const KvLayout& layout, int64_t page_size, int64_t bytes) {
  const int64_t per_page = layout.bytes_per_token() * page_size;
  return per_page > 0 ? bytes / per_page - 1 : 0;  // - the reserved page
}

std::optional<std::vector<int32_t>> KvPool::allocate(int64_t n) {
  if (n < 0 || n > num_free()) return std::nullopt;
  std::vector<int32_t> out(free_.end() - n, free_.end());
  free_.resize(free_.size() - static_cast<size_t>(n));
  for (int32_t p : out) in_use_[p] = 1;
  return out;
}

void KvPool::free(const std::vector<int32_t>& pages) {
  for (int32_t p : pages) {
    LOOM_CHECK(p >= 1 && p <= num_pages_ && in_use_[p], "KV pool: freeing page ", p,
               " that is not allocated");
    in_use_[p] = 0;
    free_.push_back(p);
  }
}

}  // namespace loom::cache
