// Where a model's weights come from: a safetensors checkpoint (mmap) or seeded dummy values.
// Layers ask for exactly the slice their rank owns, so no rank ever reads a whole sharded tensor.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loom/tensor/tensor.h"

namespace loom::io {

// Rows/columns [start, start + length) along `dim` of the stored tensor.
struct Slice {
  int dim = 0;
  int64_t start = 0;
  int64_t length = 0;
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& name) const = 0;
  // The stored tensor `name` must have shape `full_shape` (else an error naming the file, the
  // tensor and both shapes); returns the (sliced) tensor converted to `dtype` on `device`.
  virtual Tensor load(const std::string& name, const Shape& full_shape, DType dtype,
                      std::optional<Slice> slice = std::nullopt,
                      Device device = Device::cpu()) const = 0;
  virtual std::string describe() const = 0;  // "checkpoint /path" or "dummy weights (seed 0)"
};

// Opens DIR/model.safetensors or the shards listed in DIR/model.safetensors.index.json.
// Truncated/corrupt files fail here or at load() with the file and tensor named.
std::unique_ptr<WeightSource> open_checkpoint(const std::string& dir);

// Seeded pseudo-random weights at the requested shapes (`--load-format dummy`): every tensor
// exists; values depend only on (seed, name, element index), so every rank's slice agrees.
std::unique_ptr<WeightSource> dummy_weights(uint64_t seed = 0);

}  // namespace loom::io
