// Vocabulary-parallel embedding and LM head over ATTN_TP: rank r holds vocabulary rows
// split_range(V, attn_tp, r) of the table.
#pragma once
#include "loom/layers/forward_context.h"
#include "loom/layers/parallel_state.h"
#include "loom/layers/shard_loader.h"

namespace loom::layers {

class VocabParallelEmbedding {
 public:
  VocabParallelEmbedding() = default;
  VocabParallelEmbedding(const ShardLoader& w, const std::string& name, int64_t vocab, int64_t hidden,
                         const ParallelState& ps);
  // ids i32 [T] -> [T, H]: each rank looks up its rows, the ATTN_TP all-reduce completes them.
  Tensor forward(const Tensor& ids) const;
  const Tensor& table() const { return table_; }
  Range range() const { return range_; }

 private:
  Tensor table_;
  Range range_;
  Group group_;
};

class ParallelLMHead {
 public:
  ParallelLMHead() = default;
  // tied: reuse the embedding's slice (same split).
  ParallelLMHead(const ShardLoader& w, const std::string& name, int64_t vocab, int64_t hidden,
                 const ParallelState& ps, const VocabParallelEmbedding* tied);
  // Final hidden states of this rank's attention tokens [T, H] -> logits [R, V] of the whole batch
  // in batch order: the logits rows of every attention-data rank (CP chunks or DP replicas) are
  // gathered back in order, then each ATTN_TP rank scores its vocabulary slice and the slices are
  // all-gathered.
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;

 private:
  Tensor weight_;  // [ceil(V / attn_tp), H], zero rows past the vocabulary
  int64_t vocab_ = 0;
  const ParallelState* ps_ = nullptr;
};

}  // namespace loom::layers
