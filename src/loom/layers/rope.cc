#include "loom/layers/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace loom::layers {
double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

namespace {

// The dimension whose wavelength makes `rotations` turns over `max_pos` positions.
double correction_dim(double rotations, int64_t dim, double base, double max_pos) {
  return dim * std::log(max_pos / (rotations * 2 * M_PI)) / (2 * std::log(base));
}

}  // namespace

ops::Rope make_rope(const io::RopeParameters& p, int64_t dim, int64_t max_pos, Device device) {
  const int64_t half = dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    // Same float32 arithmetic as transformers: base ** (2i / dim) in float.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(p.theta), exponent);
  }
  float scaling = 1.0f;
  if (p.type == "linear") {
    for (auto& f : inv) f /= static_cast<float>(p.factor);
  } else if (p.type == "yarn") {
    const double orig = p.original_max_position_embeddings > 0 ? p.original_max_position_embeddings
                                                                : static_cast<double>(max_pos);
    double low = correction_dim(p.beta_fast, dim, p.theta, orig);
    double high = correction_dim(p.beta_slow, dim, p.theta, orig);
    if (p.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < half; ++i) {
      const float extrapolation = inv[i];
      const float interpolation = inv[i] / static_cast<float>(p.factor);
      const float ramp = std::clamp(static_cast<float>((i - low) / (high - low)), 0.0f, 1.0f);
      const float extrapolation_weight = 1.0f - ramp;
      inv[i] = interpolation * (1 - extrapolation_weight) + extrapolation * extrapolation_weight;
    }
    if (p.mscale.value_or(0) != 0 && p.mscale_all_dim.value_or(0) != 0)  // as transformers: both given and non-zero
      scaling = static_cast<float>(yarn_mscale(p.factor, *p.mscale) / yarn_mscale(p.factor, *p.mscale_all_dim));
    else
      scaling = static_cast<float>(yarn_mscale(p.factor, 1.0));
  } else {
    LOOM_CHECK(p.type == "default", "unsupported rope type '", p.type, "' (supported: default, linear, yarn)");
  }
  ops::Rope r;
  r.inv_freq = Tensor::from_floats(inv, {half}).to(device);
  r.rotary_dim = dim;
  r.scaling = scaling;
  return r;
}

}  // namespace loom::layers
