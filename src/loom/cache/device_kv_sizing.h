// How many KV tokens a GPU can hold: (total × mem_fraction_static) − (memory already in use,
// weights included), the rule SGLang's --mem-fraction-static follows. Call after the weights
// are loaded. When not even `min_tokens` fit, throws an error naming needed and free bytes.
#pragma once
#include <cstdint>

#include "loom/tensor/kv_buffers.h"

namespace loom::cache {

struct KvBudget {
  int64_t tokens = 0;       // whole pages' worth, page 0 (scratch) already subtracted
  int64_t bytes = 0;        // what the pool may take
  size_t free_bytes = 0;    // device memory free before the pool
  size_t total_bytes = 0;
};

KvBudget device_kv_budget(const KvLayout& layout, int64_t page_size, const Device& device,
                          double mem_fraction_static, int64_t min_tokens);

// The same rule on given numbers (testable without a GPU).
KvBudget kv_budget_from(const KvLayout& layout, int64_t page_size, size_t free_bytes, size_t total_bytes,
                        double mem_fraction_static, int64_t min_tokens);

}  // namespace loom::cache
