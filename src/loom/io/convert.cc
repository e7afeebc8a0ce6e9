#include "loom/io/convert.h"

#include <cstring>

#include "loom/io/parallel_chunks.h"
#include "loom/tensor/error.h"

namespace loom::io {
namespace {

bool is_float(DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f16; }

float load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
}

void store(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = v; break;
    case DType::bf16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); break;
    default: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); break;
  }
}

// One contiguous run of n elements. The common pairs get their own loops (bf16 -> f32 is the
// hot one when a bf16 checkpoint runs in f32 on the CPU).
void convert_run(const void* src, DType from, void* dst, DType to, int64_t n) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(to));
  } else if (from == DType::bf16 && to == DType::f32) {
    const auto* s = static_cast<const uint16_t*>(src);
    auto* d = static_cast<float*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
  } else if (from == DType::f32 && to == DType::bf16) {
    const auto* s = static_cast<const float*>(src);
    auto* d = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
  } else if (is_float(from) && is_float(to)) {
    for (int64_t i = 0; i < n; ++i) store(dst, to, i, load(src, from, i));
  } else if (from == DType::i32 && to == DType::i64) {
    const auto* s = static_cast<const int32_t*>(src);
    auto* d = static_cast<int64_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
  } else {  // i64 -> i32
    const auto* s = static_cast<const int64_t*>(src);
    auto* d = static_cast<int32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<int32_t>(s[i]);
  }
}

}  // namespace

bool convertible(DType from, DType to) {
  if (from == to) return true;
  if (is_float(from) && is_float(to)) return true;
  return (from == DType::i32 && to == DType::i64) || (from == DType::i64 && to == DType::i32);
}

void convert_rows(const void* src, DType from, int64_t src_row_stride, void* dst, DType to,
                  int64_t rows, int64_t run) {
  LOOM_CHECK(convertible(from, to), "cannot convert ", dtype_name(from), " to ", dtype_name(to));
  const size_t in_size = dtype_size(from), out_size = dtype_size(to);
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  // Each thread takes a range of output elements and walks the runs that cover it.
  parallel_chunks(rows * run, int64_t{1} << 22, [&](int64_t lo, int64_t hi) {
    while (lo < hi) {
      const int64_t r = lo / run, c = lo % run, n = std::min(run - c, hi - lo);
      convert_run(s + static_cast<size_t>(r * src_row_stride + c) * in_size, from,
                  d + static_cast<size_t>(lo) * out_size, to, n);
      lo += n;
    }
  });
}

}  // namespace loom::io
