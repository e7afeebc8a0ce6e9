// Loads a rank's slice of each weight straight from the WeightSource: never the whole tensor when
// only a part of it lives on this rank.
#pragma once
#include <string>

#include "loom/io/weights.h"
#include "loom/layers/group.h"

namespace loom::layers {

struct ShardLoader {
  const io::WeightSource& source;
  DType dtype;
  Device device;

  Tensor full(const std::string& name, const Shape& shape) const {
    return source.load(name, shape, dtype, std::nullopt, device);
  }
  // Rows [r.begin, +r.length) of a [rows, cols] weight (output features: column-parallel).
  Tensor rows(const std::string& name, const Shape& shape, Range r) const {
    return source.load(name, shape, dtype, io::Slice{0, r.begin, r.length}, device);
  }
  // Columns [r.begin, +r.length) (input features: row-parallel).
  Tensor cols(const std::string& name, const Shape& shape, Range r) const {
    return source.load(name, shape, dtype, io::Slice{1, r.begin, r.length}, device);
  }
  // Row slices of several [rows_i, cols] weights stacked along rows into `out` [Σ, cols]; each slice
  // is loaded onto out's device first (dummy weights are then made there).
  void rows_into(Tensor out, const std::vector<std::string>& names, const Shape& shape, Range r) const {
    for (size_t p = 0; p < names.size(); ++p)
      out.narrow(0, static_cast<int64_t>(p) * r.length, r.length)
          .copy_from(source.load(names[p], shape, dtype, io::Slice{0, r.begin, r.length}, out.device()));
  }
};

}  // namespace loom::layers
