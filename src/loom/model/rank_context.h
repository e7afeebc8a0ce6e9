// The share of a batch one rank of a parallel run attends over, and where every rank's rows are.
// Attention DP: sequence s runs on replica s mod dp. Context-parallel prefill (a single sequence of
// at least 2·cp new tokens, --enable-prefill-context-parallel): the new tokens are cut into 2·cp
// chunks and CP rank r takes chunks r and 2·cp−1−r (zigzag: equal causal work). Anything else
// runs the plain path: every CP rank of a replica holds all its tokens. Every rank computes every
// other rank's counts from the batch (they all see the same one), so no counts are exchanged.
#pragma once
#include <vector>

#include "loom/layers/forward_context.h"
#include "loom/model/forward_batch.h"
#include "loom/parallel/parallel_config.h"

namespace loom::model {

// Whether this batch's prefill is split over ATTN_CP (the same answer on every rank).
bool splits_over_cp(const ForwardBatch& batch, const parallel::ParallelConfig& c);

// `tp_rank`: the rank's index in its TP group. `ids` receives this rank's token ids.
layers::ForwardContext make_rank_context(const ForwardBatch& batch, const KvBuffers& kv, Device device,
                                         const parallel::ParallelConfig& c, int tp_rank,
                                         std::vector<int32_t>& ids);

}  // namespace loom::model
