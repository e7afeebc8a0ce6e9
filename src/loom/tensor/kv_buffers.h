// The KV cache storage a model writes into: per layer, K [slots, kv_heads, k_dim] and
// V [slots, kv_heads, v_dim], where slots = pages * page_size. cache/ owns the pool;
// runtime/ hands these views to the model. (A plain struct of tensors, so cache/ and layers/
// can both name it without depending on each other.)
#pragma once
#include <vector>

#include "loom/tensor/tensor.h"

namespace loom {

struct KvBuffers {
  std::vector<Tensor> k, v;  // one per layer
  int64_t page_size = 0;
};

// What one token of KV needs in every layer; the pool is sized from it.
struct KvLayout {
  int64_t num_layers = 0;
  int64_t kv_heads = 0;
  int64_t k_dim = 0;
  int64_t v_dim = 0;
  DType dtype = DType::f32;
  int64_t bytes_per_token() const { return num_layers * kv_heads * (k_dim + v_dim) * dtype_size(dtype); }
};

}  // namespace loom
