// The CUDA branch of the parallel layers' ops (layers/ops.h): vocab-parallel lookup and logits,
// the context-parallel K/V write, and the expert-parallel dispatch and combine. All data stays on
// the GPU; only the dispatch's per-peer row counts come to the host (the all-to-all needs them).
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/parallel.h"
#include "loom/layers/group.h"
#include "loom/layers/ops_cuda.h"
#include "loom/layers/ops_cuda_util.h"
#include "loom/tensor/cuda_check.h"

namespace loom::layers::ops::cuda {
namespace kc = loom::kernels::cuda;

Tensor embedding_slice(const Tensor& table, const Tensor& ids, int64_t vocab_begin) {
  OpScope scope("embedding_slice", table);
  check_bf16(table, "embedding_slice", "table");
  check_i32(ids, "embedding_slice", "ids");
  const int64_t n = ids.numel(), dim = table.size(1);
  Tensor out = Tensor::empty({n, dim}, DType::bf16, table.device());
  kc::embedding_slice(table.data_ptr(), ids.data<int32_t>(), out.data_ptr(), n, dim, vocab_begin, table.size(0),
                      stream_for(table));
  return out;
}

void write_kv(const Tensor& k, const Tensor& v, int64_t layer, const ForwardContext& ctx) {
  OpScope scope("write_kv", k);
  check_bf16(k, "write_kv", "k");
  check_bf16(v, "write_kv", "v");
  check_i32(ctx.positions, "write_kv", "positions");
  const Tensor& kcache = ctx.kv->k[layer];
  const Tensor& vcache = ctx.kv->v[layer];
  const int64_t tokens = k.size(0), hk = kcache.size(1), d = kcache.size(2);
  // An empty V cache (latent attention on FlashInfer's MLA kernel, which reads the value from the
  // key) takes no value: v is not written.
  const bool value_cached = vcache.size(2) > 0;
  LOOM_CHECK(k.size(1) == hk && k.size(2) == d && v.size(1) == hk && (!value_cached || v.size(2) == vcache.size(2)) &&
                 tokens == ctx.num_tokens && v.size(0) == tokens,
             "write_kv: k ", k.str(), ", v ", v.str(), " against the cache ", kcache.str(), " and ", ctx.num_tokens,
             " tokens");
  const kc::PagedKvArgs kv{kcache.data_ptr(), vcache.data_ptr(), ctx.page_table.data<int32_t>(),
                           ctx.token_starts.data<int32_t>(), ctx.start_pos.data<int32_t>(), ctx.num_seqs,
                           ctx.max_pages, ctx.page_size, hk, d, v.size(2)};
  kc::write_kv(kv, k.data_ptr(), value_cached ? v.data_ptr() : nullptr, ctx.positions.data<int32_t>(), tokens,
               stream_for(k));
}

void index_add_rows(Tensor& out, const Tensor& src, const Tensor& rows) {
  OpScope scope("index_add_rows", out);
  check_bf16(out, "index_add_rows", "out");
  check_bf16(src, "index_add_rows", "src");
  check_i32(rows, "index_add_rows", "rows");
  const int64_t dim = out.size(-1);
  LOOM_CHECK(src.size(0) == rows.numel() && src.numel() == rows.numel() * dim, "index_add_rows: ", src.str(),
             " rows into ", out.str());
  kc::index_add_rows(out.data_ptr(), src.data_ptr(), rows.data<int32_t>(), rows.numel(), dim, out.size(0),
                     stream_for(out));
}

DispatchPlan moe_dispatch_plan(const Routing& routing, int peers, int64_t experts) {
  OpScope scope("moe dispatch plan", routing.ids);
  check_i32(routing.ids, "moe_dispatch_plan", "expert ids");
  LOOM_CHECK(routing.weights.dtype() == DType::f32 && routing.weights.shape() == routing.ids.shape(),
             "moe_dispatch_plan: weights ", routing.weights.str(), " for ids ", routing.ids.str());
  const Device dev = routing.ids.device();
  const int64_t t = routing.ids.size(0), k = routing.ids.size(1);
  Tensor rows = Tensor::empty({t * peers}, DType::i32, dev);
  Tensor meta = Tensor::empty({t * peers, 2 * k}, DType::f32, dev);
  Tensor counts = Tensor::empty({peers}, DType::i32, dev);
  kc::moe_dispatch_plan(routing.ids.data<int32_t>(), routing.weights.data<float>(), t, k, peers, experts,
                        rows.data<int32_t>(), meta.data<float>(), counts.data<int32_t>(), stream_for(routing.ids));
  const Tensor host = counts.to(Device::cpu());  // waits for the plan: the collective sizes need it
  DispatchPlan plan;
  int64_t sent = 0;
  for (int p = 0; p < peers; ++p) sent += plan.send.emplace_back(host.data<int32_t>()[p]);
  plan.rows = rows.narrow(0, 0, sent);
  plan.meta = meta.narrow(0, 0, sent);
  return plan;
}

Routing unpack_routing(const Tensor& meta, int64_t k) {
  OpScope scope("unpack_routing", meta);
  LOOM_CHECK(meta.device().is_cuda() && meta.dim() == 2 && meta.size(1) == 2 * k && meta.dtype() == DType::f32 &&
                 meta.is_contiguous(),
             "unpack_routing: ", meta.str(), " for top-", k);
  const int64_t n = meta.size(0);
  Routing r{Tensor::empty({n, k}, DType::f32, meta.device()), Tensor::empty({n, k}, DType::i32, meta.device())};
  kc::unpack_routing(meta.data<float>(), n, k, r.ids.data<int32_t>(), r.weights.data<float>(), stream_for(meta));
  return r;
}

Tensor concat_vocab_shards(const Tensor& shards, int parts, int64_t vocab) {
  OpScope scope("concat_vocab_shards", shards);
  check_bf16(shards, "concat_vocab_shards", "shards");
  const int64_t rows = shards.size(0) / parts, padded = shards.size(1), esize = 2;
  Tensor out = Tensor::empty({rows, vocab}, shards.dtype(), shards.device());
  if (rows == 0) return out;
  cudaStream_t s = stream_for(shards);
  for (int p = 0; p < parts; ++p) {  // one strided copy per member: its R rows into its columns
    const Range r = split_range(vocab, parts, p);
    CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(out.data_ptr()) + r.begin * esize, vocab * esize,
                                 static_cast<const char*>(shards.data_ptr()) + p * rows * padded * esize,
                                 padded * esize, r.length * esize, rows, cudaMemcpyDeviceToDevice, s));
  }
  return out;
}

}  // namespace loom::layers::ops::cuda
