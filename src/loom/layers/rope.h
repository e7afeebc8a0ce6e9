// Rotary-embedding tables from a config's rope parameters (default, linear, YaRN).
#pragma once
#include "loom/io/model_config.h"
#include "loom/layers/ops.h"

namespace loom::layers {

ops::Rope make_rope(const io::RopeParameters& p, int64_t rotary_dim, int64_t max_position_embeddings,
                    Device device);

}  // namespace loom::layers
