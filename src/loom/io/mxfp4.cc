#include "loom/io/mxfp4.h"

#include <cmath>

namespace loom::io {
namespace {

// e2m1: sign, two exponent bits, one mantissa bit.
constexpr float kFp4[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                            -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

}  // namespace

void dequantize_mxfp4_row(const uint8_t* blocks, const uint8_t* scales, int64_t cols, float* out) {
  for (int64_t g = 0; g < cols / kMxfp4Block; ++g) {
    const int exponent = static_cast<int>(scales[g]) - 127;
    for (int64_t b = 0; b < kMxfp4Block / 2; ++b) {
      const uint8_t byte = blocks[g * kMxfp4Block / 2 + b];
      out[g * kMxfp4Block + 2 * b] = std::ldexp(kFp4[byte & 0x0f], exponent);
      out[g * kMxfp4Block + 2 * b + 1] = std::ldexp(kFp4[byte >> 4], exponent);
    }
  }
}

}  // namespace loom::io
