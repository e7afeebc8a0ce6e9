#include "loom/model/forward_batch.h"

#include <algorithm>

#include "loom/model/causal_lm.h"
#include "loom/model/context.h"
#include "loom/model/rank_context.h"
#include "loom/tensor/error.h"

namespace loom::model {

layers::ForwardContext make_host_context(const ForwardBatch& batch, const KvBuffers& kv) {
  layers::ForwardContext c;
  c.num_seqs = static_cast<int64_t>(batch.seqs.size());
  c.page_size = kv.page_size;
  c.kv = &kv;
  LOOM_CHECK(c.num_seqs > 0, "forward: empty batch");
  c.decode_only = true;
  for (const auto& s : batch.seqs) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    LOOM_CHECK(n > 0, "forward: a sequence with no new tokens");
    LOOM_CHECK(s.start_pos >= 0, "forward: negative start position");
    const int64_t end = s.start_pos + n;
    LOOM_CHECK(static_cast<int64_t>(s.page_table.size()) * kv.page_size >= end, "forward: ",
               s.page_table.size(), " pages of ", kv.page_size, " tokens cannot hold ", end, " positions");
    c.max_pages = std::max<int64_t>(c.max_pages, static_cast<int64_t>(s.page_table.size()));
    c.max_seq_len = std::max(c.max_seq_len, end);
    c.decode_only = c.decode_only && n == 1;
  }
  c.h_token_starts.push_back(0);
  c.h_page_table.assign(static_cast<size_t>(c.num_seqs * c.max_pages), 0);
  for (int64_t i = 0; i < c.num_seqs; ++i) {
    const auto& s = batch.seqs[i];
    const int32_t n = static_cast<int32_t>(s.tokens.size());
    const int32_t first = c.h_token_starts.back();
    for (int32_t t = 0; t < n; ++t) c.h_positions.push_back(s.start_pos + t);
    c.h_token_starts.push_back(first + n);
    c.h_start_pos.push_back(s.start_pos);
    std::copy(s.page_table.begin(), s.page_table.end(), c.h_page_table.begin() + i * c.max_pages);
    if (s.all_logits)
      for (int32_t t = 0; t < n; ++t) c.h_logit_rows.push_back(first + t);
    else
      c.h_logit_rows.push_back(first + n - 1);
  }
  c.num_tokens = c.h_token_starts.back();
  return c;
}

layers::ForwardContext make_context(const ForwardBatch& batch, const KvBuffers& kv, Device device) {
  layers::ForwardContext c = make_host_context(batch, kv);
  auto upload = [&](const std::vector<int32_t>& v) {
    return Tensor::from_ints(v, {static_cast<int64_t>(v.size())}).to(device);
  };
  c.positions = upload(c.h_positions);
  c.token_starts = upload(c.h_token_starts);
  c.start_pos = upload(c.h_start_pos);
  c.page_table = upload(c.h_page_table).view({c.num_seqs, c.max_pages});
  c.logit_rows = upload(c.h_logit_rows);
  return c;
}

Tensor CausalLM::forward(const ForwardBatch& batch, const KvBuffers& kv) {
  return forward_on_device(batch, kv).to(Device::cpu()).to(DType::f32);
}

Tensor CausalLM::forward_on_device(const ForwardBatch& batch, const KvBuffers& kv) {
  if (const layers::ParallelState* ps = parallel_state(); ps && !ps->single()) {
    std::vector<int32_t> mine;
    const layers::ForwardContext ctx = make_rank_context(batch, kv, device(), ps->config, ps->tp_rank, mine);
    const Tensor ids = Tensor::from_ints(mine, {static_cast<int64_t>(mine.size())}).to(device());
    return forward_device(ids, ctx);
  }
  const layers::ForwardContext ctx = make_context(batch, kv, device());
  const Tensor ids = Tensor::from_ints(all_tokens(batch), {ctx.num_tokens}).to(device());
  return forward_device(ids, ctx);
}

std::vector<int32_t> all_tokens(const ForwardBatch& batch) {
  std::vector<int32_t> ids;
  for (const auto& s : batch.seqs) ids.insert(ids.end(), s.tokens.begin(), s.tokens.end());
  return ids;
}

}  // namespace loom::model
