#include "loom/cache/device_kv_sizing.h"

#include <algorithm>

#include "loom/cache/kv_pool.h"
#include "loom/tensor/cuda_stream.h"
#include "loom/tensor/error.h"

namespace loom::cache {

KvBudget kv_budget_from(const KvLayout& layout, int64_t page_size, size_t free_bytes, size_t total_bytes,
                        double mem_fraction_static, int64_t min_tokens) {
  KvBudget b;
  b.free_bytes = free_bytes;
  b.total_bytes = total_bytes;
  const double used = static_cast<double>(total_bytes - std::min(free_bytes, total_bytes));
  b.bytes = std::max<int64_t>(0, static_cast<int64_t>(static_cast<double>(total_bytes) * mem_fraction_static - used));
  b.bytes = std::min<int64_t>(b.bytes, static_cast<int64_t>(free_bytes));
  b.tokens = std::max<int64_t>(0, KvPool::pages_that_fit(layout, page_size, b.bytes)) * page_size;
  if (b.tokens < min_tokens) {
    const int64_t need = (min_tokens + page_size - 1) / page_size + 1;  // + the scratch page
    const int64_t need_bytes = need * page_size * layout.bytes_per_token();
    throw Error(str("out of GPU memory for the KV cache: ", min_tokens, " tokens need ", need_bytes,
                    " bytes, but --mem-fraction-static ", mem_fraction_static, " of ", total_bytes, " bytes leaves ",
                    b.bytes, " (", free_bytes, " bytes free after the weights); lower the batch/context or raise "
                    "--mem-fraction-static"));
  }
  return b;
}

KvBudget device_kv_budget(const KvLayout& layout, int64_t page_size, const Device& device,
                          double mem_fraction_static, int64_t min_tokens) {
#ifdef LOOM_HAVE_CUDA
  const cuda::MemInfo m = cuda::mem_info(device);
  return kv_budget_from(layout, page_size, m.free, m.total, mem_fraction_static, min_tokens);
#else
  throw Error(str("device ", device.str(), " requested but loom was built without the CUDA backend"));
#endif
}

}  // namespace loom::cache
