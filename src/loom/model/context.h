// Turns a ForwardBatch into the per-step metadata the layers read.
#pragma once
#include <vector>

#include "loom/layers/forward_context.h"
#include "loom/model/forward_batch.h"

namespace loom::model {

layers::ForwardContext make_context(const ForwardBatch& batch, const KvBuffers& kv, Device device);
// The same with only the host fields (h_*, counts, kv) filled: for callers that upload them their own way.
layers::ForwardContext make_host_context(const ForwardBatch& batch, const KvBuffers& kv);

// Every sequence's new tokens, in batch order.
std::vector<int32_t> all_tokens(const ForwardBatch& batch);

}  // namespace loom::model
