#include "loom/layers/vocab_parallel.h"

#include "loom/layers/ops.h"

namespace loom::layers {

VocabParallelEmbedding::VocabParallelEmbedding(const ShardLoader& w, const std::string& name, int64_t vocab,
                                               int64_t hidden, const ParallelState& ps)
    : range_(split_range(vocab, ps.attn_tp.size(), ps.attn_tp.rank())), group_(ps.attn_tp) {
  table_ = group_.alone() ? w.full(name, {vocab, hidden}) : w.rows(name, {vocab, hidden}, range_);
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  if (group_.alone()) return ops::embedding(table_, ids);
  Tensor x = ops::embedding_slice(table_, ids, range_.begin);
  group_.all_reduce(x);
  return x;
}

ParallelLMHead::ParallelLMHead(const ShardLoader& w, const std::string& name, int64_t vocab, int64_t hidden,
                               const ParallelState& ps, const VocabParallelEmbedding* tied)
    : vocab_(vocab), ps_(&ps) {
  const int parts = ps.attn_tp.size();
  const Range r = split_range(vocab, parts, ps.attn_tp.rank());
  const int64_t padded = (vocab + parts - 1) / parts;
  Tensor mine = tied ? tied->table() : w.rows(name, {vocab, hidden}, r);
  if (r.length == padded) {
    weight_ = mine;
    return;
  }
  weight_ = Tensor::zeros({padded, hidden}, w.dtype, w.device);
  weight_.narrow(0, 0, r.length).copy_from(mine);
}

Tensor ParallelLMHead::forward(const Tensor& x, const ForwardContext& ctx) const {
  Tensor h = ops::gather_rows(x, ctx.logit_rows);
  if (!ctx.rank_logit_rows.empty()) {  // bring every attention-data rank's rows, in batch order
    const Group& data = ctx.cp_split ? ps_->attn_cp : ps_->attn_dp;
    if (!data.alone()) {
      std::vector<int64_t> counts;
      for (int m : data.comm()->ranks()) counts.push_back(ctx.rank_logit_rows[m % ps_->config.tp]);
      h = ops::gather_rows(data.all_gather(h, counts), ctx.logit_order);
    }
  }
  Tensor local = ops::linear(h, weight_);
  const Group& tp = ps_->attn_tp;
  if (tp.alone()) return local;
  const int64_t rows = h.size(0);
  const Tensor all = tp.all_gather(local, std::vector<int64_t>(tp.size(), rows));  // [P·R, padded]
  return ops::concat_vocab_shards(all, tp.size(), vocab_);
}

}  // namespace loom::layers
