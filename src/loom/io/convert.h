// Host-side element conversion between storage dtypes, used when a checkpoint's stored dtype
// differs from the dtype a model runs in. Large copies are split over a few threads.
#pragma once
#include <cstdint>

#include "loom/tensor/dtype.h"

namespace loom::io {

// Float types convert among themselves (bf16 -> f32 is exact, f32 -> bf16/f16 rounds to nearest
// even); any dtype converts to itself; i32 <-> i64 widen/narrow.
bool convertible(DType from, DType to);

// `rows` runs of `run` elements each; run r starts `src_row_stride` elements after run r - 1.
// The destination is contiguous (rows * run elements). Requires convertible(from, to).
void convert_rows(const void* src, DType from, int64_t src_row_stride, void* dst, DType to,
                  int64_t rows, int64_t run);

}  // namespace loom::io
