// One step of the model over a batch of sequences: each contributes new tokens (a prefill chunk
// or one decode token) whose K/V are appended to its pages.
#pragma once
#include <cstdint>
#include <vector>

namespace loom::model {

struct SequenceInput {
  std::vector<int32_t> tokens;      // new tokens this step
  int32_t start_pos = 0;            // tokens of this sequence already in the KV cache
  std::vector<int32_t> page_table;  // KV pages covering positions [0, start_pos + tokens.size())
  bool all_logits = false;          // logits for every new token, else for the last one only
};

struct ForwardBatch {
  std::vector<SequenceInput> seqs;
  // Set when the step is queued before the previous step's sampled ids reached the host (the
  // engine's overlapped decode): those ids on the device, and a token -1 - r in `seqs` stands
  // for row r of them. Only runners whose takes_previous_ids() says so accept such a batch.
  const int32_t* previous_ids = nullptr;

  int64_t num_tokens() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += static_cast<int64_t>(s.tokens.size());
    return n;
  }
  int64_t num_logit_rows() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
    return n;
  }
};

}  // namespace loom::model
