// Loads a model's tensors at the dtype/device it runs in, checking every shape.
#pragma once
#include <string>
#include <vector>

#include "loom/io/weights.h"

namespace loom::model {

struct WeightLoader {
  const io::WeightSource& source;
  DType dtype;
  Device device;

  Tensor get(const std::string& name, const Shape& shape) const {
    return source.load(name, shape, dtype, std::nullopt, device);
  }

  // Per-expert [rows, cols] matrices `prefix.{e}.{name}` stacked into [experts, Σ rows, cols],
  // the parts of each expert concatenated along rows (gate then up).
  Tensor stack_experts(const std::string& prefix, int64_t experts,
                       const std::vector<std::string>& parts, int64_t rows, int64_t cols) const {
    const int64_t n = static_cast<int64_t>(parts.size());
    Tensor out = Tensor::empty({experts, n * rows, cols}, dtype, device);
    for (int64_t e = 0; e < experts; ++e) {
      for (int64_t p = 0; p < n; ++p) {
        Tensor part = source.load(prefix + "." + std::to_string(e) + "." + parts[p], {rows, cols}, dtype);
        Tensor dst = out[e].narrow(0, p * rows, rows);
        dst.copy_from(part);
      }
    }
    return out;
  }
};

}  // namespace loom::model
