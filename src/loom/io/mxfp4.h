// MXFP4, the format of the released gpt-oss checkpoints' expert weights (OCP microscaling FP4):
// "<name>_blocks" u8 [..., rows, cols / 32, 16] holds two e2m1 values a byte (the low nibble is the
// even column), "<name>_scales" u8 [..., rows, cols / 32] one power-of-two exponent (biased by
// 127) per 32 values. transformers dequantizes them to the bf16 parameter exactly so (its
// convert_moe_packed_tensors), then swaps rows and columns; every value is exact in bf16.
#pragma once
#include <cstdint>

namespace loom::io {

inline constexpr int64_t kMxfp4Block = 32;  // values sharing one scale

// One row of `cols` values (a multiple of 32): blocks [cols / 2] bytes, scales [cols / 32] -> out[cols].
void dequantize_mxfp4_row(const uint8_t* blocks, const uint8_t* scales, int64_t cols, float* out);

}  // namespace loom::io
