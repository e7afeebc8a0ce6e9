// Checks a request against the model before it is queued: every failure is a RequestError
// naming the field, with the numbers involved.
#pragma once
#include <cstdint>
#include <vector>

#include "loom/engine/request.h"

namespace loom::engine {

struct ModelLimits {
  int64_t vocab_size = 0;
  int64_t context_length = 0;  // max_position_embeddings (0 = unknown)
  int64_t kv_capacity = 0;     // tokens the whole KV pool holds
  std::vector<int32_t> eos_token_ids;  // the config's and the tokenizer's end-of-sequence ids
};

void validate_request(const Request& request, const ModelLimits& limits);

}  // namespace loom::engine
