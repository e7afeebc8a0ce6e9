// Turns a ForwardBatch into the per-step metadata the layers read.
#pragma once
#include <vector>

#include "loom/layers/forward_context.h"
#include "loom/model/forward_batch.h"

namespace loom::model {

layers::ForwardContext make_context(const ForwardBatch& batch, const KvBuffers& kv, Device device);

// Every sequence's new tokens, in batch order.
std::vector<int32_t> all_tokens(const ForwardBatch& batch);

}  // namespace loom::model
