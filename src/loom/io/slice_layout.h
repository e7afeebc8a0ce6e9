// A Slice of a row-major tensor seen as `outer` blocks, each holding `length * inner` contiguous
// elements that start `start * inner` elements into a block of `dim_size * inner`. Shared by the
// checkpoint reader (which copies just those bytes) and the dummy generator (which needs each
// element's index in the full tensor).
#pragma once
#include <optional>
#include <string>

#include "loom/io/weights.h"

namespace loom::io {

struct SliceLayout {
  int64_t outer = 1, dim_size = 1, start = 0, length = 1, inner = 1;

  int64_t run() const { return length * inner; }                  // contiguous elements per block
  int64_t src_stride() const { return dim_size * inner; }         // elements between blocks
  int64_t first() const { return start * inner; }                 // offset of the first element
  int64_t numel() const { return outer * run(); }
  // Index in the full tensor of element i of the (contiguous) slice.
  int64_t full_index(int64_t i) const { return (i / run()) * src_stride() + first() + i % run(); }
};

// Validates `slice` against `shape` (errors name the tensor) and describes it.
inline SliceLayout slice_layout(const std::string& name, const Shape& shape, const std::optional<Slice>& slice) {
  SliceLayout l;
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (!slice) {
    l.dim_size = l.length = numel;
    return l;
  }
  const int rank = static_cast<int>(shape.size());
  LOOM_CHECK(slice->dim >= 0 && slice->dim < rank, "slice of tensor '", name, "' along dim ", slice->dim,
             " but the tensor has shape ", shape_str(shape));
  LOOM_CHECK(slice->start >= 0 && slice->length >= 0 && slice->start + slice->length <= shape[slice->dim],
             "slice [", slice->start, ", ", slice->start + slice->length, ") of dim ", slice->dim,
             " is outside tensor '", name, "' of shape ", shape_str(shape));
  for (int d = 0; d < slice->dim; ++d) l.outer *= shape[d];
  for (int d = slice->dim + 1; d < rank; ++d) l.inner *= shape[d];
  l.dim_size = shape[slice->dim];
  l.start = slice->start;
  l.length = slice->length;
  return l;
}

inline Shape sliced_shape(Shape shape, const std::optional<Slice>& slice) {
  if (slice) shape[slice->dim] = slice->length;
  return shape;
}

}  // namespace loom::io
