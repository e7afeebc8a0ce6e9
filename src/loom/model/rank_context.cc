#include "loom/model/rank_context.h"

#include <numeric>

#include "loom/layers/group.h"
#include "loom/model/context.h"

namespace loom::model {

using layers::ForwardContext;

bool splits_over_cp(const ForwardBatch& batch, const parallel::ParallelConfig& c) {
  return c.attn_cp > 1 && c.prefill_cp && batch.seqs.size() == 1 &&
         static_cast<int64_t>(batch.seqs[0].tokens.size()) >= 2 * c.attn_cp;
}

namespace {

Tensor ints(const std::vector<int32_t>& v, Device device) {
  return Tensor::from_ints(v, {static_cast<int64_t>(v.size())}).to(device);
}

// A replica with no sequences this step: it still joins the collectives, with zero rows.
ForwardContext idle_context(const KvBuffers& kv, Device device) {
  ForwardContext c;
  c.page_size = kv.page_size;
  c.kv = &kv;
  c.h_token_starts = {0};
  c.positions = ints({}, device);
  c.token_starts = ints(c.h_token_starts, device);
  c.start_pos = ints({}, device);
  c.page_table = ints({}, device).view({0, 0});
  c.logit_rows = ints({}, device);
  return c;
}

int64_t logit_rows_of(const SequenceInput& s) {
  return s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
}

ForwardContext cp_context(const ForwardBatch& batch, const KvBuffers& kv, Device device,
                          const parallel::ParallelConfig& c, int tp_rank, std::vector<int32_t>& ids) {
  const SequenceInput& s = batch.seqs[0];
  const int cp = c.attn_cp, me = (tp_rank / c.attn_tp()) % cp;
  const int64_t n = static_cast<int64_t>(s.tokens.size());
  const auto chunk = [&](int k) { return layers::split_range(n, 2 * cp, k); };
  const auto owner = [&](int k) { return k < cp ? k : 2 * cp - 1 - k; };

  std::vector<int64_t> counts(cp), offset(cp, 0);
  for (int r = 0; r < cp; ++r) counts[r] = chunk(r).length + chunk(2 * cp - 1 - r).length;
  for (int r = 1; r < cp; ++r) offset[r] = offset[r - 1] + counts[r - 1];

  ForwardBatch mine;  // the two chunks as two "sequences" over the same pages
  for (int k : {me, 2 * cp - 1 - me}) {
    const layers::Range r = chunk(k);
    SequenceInput part;
    part.tokens.assign(s.tokens.begin() + r.begin, s.tokens.begin() + r.begin + r.length);
    part.start_pos = s.start_pos + static_cast<int32_t>(r.begin);
    part.page_table = s.page_table;
    mine.seqs.push_back(std::move(part));
  }
  ForwardContext ctx = make_context(mine, kv, device);
  ids = all_tokens(mine);

  ctx.cp_split = true;
  ctx.cp_whole = std::make_shared<const ForwardContext>(make_context(batch, kv, device));
  ctx.cp_counts = counts;
  std::vector<int32_t> order(n);
  for (int k = 0; k < 2 * cp; ++k) {
    const int r = owner(k);
    const int64_t first = offset[r] + (k == r ? 0 : chunk(r).length);
    for (int64_t t = 0; t < chunk(k).length; ++t) order[chunk(k).begin + t] = static_cast<int32_t>(first + t);
  }
  ctx.cp_order = ints(order, device);

  for (int i = 0; i < c.tp; ++i) ctx.rank_tokens.push_back(counts[(i / c.attn_tp()) % cp]);
  if (s.all_logits) {  // every token's row, gathered in rank order, back to token order
    ctx.h_logit_rows.resize(counts[me]);
    std::iota(ctx.h_logit_rows.begin(), ctx.h_logit_rows.end(), 0);
    for (int i = 0; i < c.tp; ++i) ctx.rank_logit_rows.push_back(counts[(i / c.attn_tp()) % cp]);
    ctx.logit_order = ctx.cp_order;
  } else {  // the last token ends chunk 2·cp−1, the second chunk of CP rank 0
    ctx.h_logit_rows.clear();
    if (me == 0) ctx.h_logit_rows.push_back(static_cast<int32_t>(counts[0] - 1));
    for (int i = 0; i < c.tp; ++i) ctx.rank_logit_rows.push_back((i / c.attn_tp()) % cp == 0 ? 1 : 0);
    ctx.logit_order = ints({0}, device);
  }
  ctx.logit_rows = ints(ctx.h_logit_rows, device);
  return ctx;
}

ForwardContext dp_context(const ForwardBatch& batch, const KvBuffers& kv, Device device,
                          const parallel::ParallelConfig& c, int tp_rank, std::vector<int32_t>& ids) {
  const int dp = c.attn_dp, span = c.attn_tp() * c.attn_cp;
  const int me = tp_rank / span;
  const int64_t seqs = static_cast<int64_t>(batch.seqs.size());
  std::vector<int64_t> tokens(dp, 0), rows(dp, 0);
  ForwardBatch mine;
  for (int64_t s = 0; s < seqs; ++s) {
    tokens[s % dp] += static_cast<int64_t>(batch.seqs[s].tokens.size());
    rows[s % dp] += logit_rows_of(batch.seqs[s]);
    if (s % dp == me) mine.seqs.push_back(batch.seqs[s]);
  }
  ForwardContext ctx = mine.seqs.empty() ? idle_context(kv, device) : make_context(mine, kv, device);
  ids = all_tokens(mine);
  for (int i = 0; i < c.tp; ++i) {
    ctx.rank_tokens.push_back(tokens[i / span]);
    ctx.rank_logit_rows.push_back(rows[i / span]);
  }
  // Gathered over ATTN_DP: replica 0's rows, then replica 1's, ...; batch rows follow the sequences.
  std::vector<int64_t> first(dp, 0), used(dp, 0);
  for (int d = 1; d < dp; ++d) first[d] = first[d - 1] + rows[d - 1];
  std::vector<int32_t> order;
  for (int64_t s = 0; s < seqs; ++s) {
    const int d = static_cast<int>(s % dp);
    for (int64_t j = 0; j < logit_rows_of(batch.seqs[s]); ++j) order.push_back(static_cast<int32_t>(first[d] + used[d]++));
  }
  ctx.logit_order = ints(order, device);
  return ctx;
}

}  // namespace

ForwardContext make_rank_context(const ForwardBatch& batch, const KvBuffers& kv, Device device,
                                 const parallel::ParallelConfig& c, int tp_rank, std::vector<int32_t>& ids) {
  LOOM_CHECK(!batch.seqs.empty(), "forward: empty batch");
  return splits_over_cp(batch, c) ? cp_context(batch, kv, device, c, tp_rank, ids)
                                  : dp_context(batch, kv, device, c, tp_rank, ids);
}

}  // namespace loom::model
