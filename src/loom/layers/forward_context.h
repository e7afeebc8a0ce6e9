// Per-step metadata every layer of a forward needs: token positions, where each sequence's
// tokens start, page tables and which rows produce logits. Built once per step from the
// ForwardBatch on the model's device (in static buffers when a CUDA graph replays).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "loom/tensor/kv_buffers.h"
#include "loom/tensor/tensor.h"

namespace loom::layers {

struct ForwardContext {
  int64_t num_seqs = 0;
  int64_t num_tokens = 0;
  int64_t max_pages = 0;    // page_table row width
  int64_t max_seq_len = 0;  // longest start_pos + new tokens
  int64_t page_size = 0;
  bool decode_only = false; // every sequence has exactly one new token

  // Host copies (always filled) ...
  std::vector<int32_t> h_positions;     // [T] absolute position of each new token
  std::vector<int32_t> h_token_starts;  // [S+1] prefix sums of new tokens per sequence
  std::vector<int32_t> h_start_pos;     // [S] tokens already cached per sequence
  std::vector<int32_t> h_page_table;    // [S, max_pages], padded with 0
  std::vector<int32_t> h_logit_rows;    // [R] token index of each logits row

  // ... and the same on the model's device (aliases of nothing on CPU: tensors on the host).
  Tensor positions, token_starts, start_pos, page_table, logit_rows;

  const KvBuffers* kv = nullptr;

  // A piecewise CUDA graph's step (runtime/piecewise_graph_runner.h): i32 [1] on the device, the
  // real token count; rows past it are padding up to the captured size (undefined otherwise).
  Tensor valid_tokens;

  // Parallel steps (model/rank_context.h fills these; one rank leaves them empty). This rank's
  // fields above describe only the tokens it runs attention on.
  std::vector<int64_t> rank_tokens;      // [tp] attention tokens of every rank of the TP group
  std::vector<int64_t> rank_logit_rows;  // [tp] logits rows each rank produces
  Tensor logit_order;                    // i32 [R]: gathered row (attention-data order) of batch row r
  // Context-parallel prefill: this rank holds zigzag chunks r and 2·cp−1−r of one sequence.
  bool cp_split = false;
  std::shared_ptr<const ForwardContext> cp_whole;  // the whole sequence: where gathered K/V go
  std::vector<int64_t> cp_counts;                  // tokens of each ATTN_CP rank
  Tensor cp_order;                                 // i32 [N]: gathered row of sequence token t
};

}  // namespace loom::layers
