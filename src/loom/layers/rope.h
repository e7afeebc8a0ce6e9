// Rotary-embedding tables from a config's rope parameters (default, linear, YaRN).
#pragma once
#include "loom/io/model_config.h"
#include "loom/layers/ops.h"

namespace loom::layers {

// YaRN's magnitude factor 0.1·m·ln(scale) + 1 (1 when scale ≤ 1). DeepSeek scales its softmax by
// the square of yarn_mscale(factor, mscale_all_dim).
double yarn_mscale(double scale, double m);

ops::Rope make_rope(const io::RopeParameters& p, int64_t rotary_dim, int64_t max_position_embeddings,
                    Device device);

}  // namespace loom::layers
