#include "loom/runtime/cuda_graph_runner.h"

#include <algorithm>

#ifdef LOOM_HAVE_CUDA
#include "loom/kernels/cuda/kernels.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom::runtime {

std::vector<int64_t> cuda_graph_buckets(int64_t max_bs) {
  std::vector<int64_t> b;
  for (int64_t s : {1, 2, 4, 8})
    if (s <= max_bs) b.push_back(s);
  for (int64_t s = 16; s <= max_bs; s += 8) b.push_back(s);
  if (b.empty() || b.back() != max_bs) b.push_back(max_bs);
  return b;
}

#ifdef LOOM_HAVE_CUDA
namespace {
// Offsets (in i32 elements) of the fields in the metadata buffer. Each field has room for max_bs
// sequences and the page table comes last, so that what a graph of bs sequences reads (the first
// bs entries of each field, the first bs rows of the table) lies in used(bs), a prefix: a step
// fills and uploads only that (a bs-1 step of a 128-sequence runner at 2,560 pages a row uploaded
// 1.3 MB before, 13 KB now).
struct MetaLayout {
  int64_t ids, positions, token_starts, start_pos, logit_rows, logit_order, page_table, max_pages, total;
  MetaLayout(int64_t max_bs, int64_t max_pages_, int dp) : max_pages(max_pages_) {
    ids = 0;
    positions = ids + max_bs;
    token_starts = positions + max_bs;
    start_pos = token_starts + max_bs + 1;
    logit_rows = start_pos + max_bs;
    logit_order = logit_rows + max_bs;
    page_table = logit_order + (dp > 1 ? dp * max_bs : 0);
    total = page_table + max_bs * max_pages;
  }
  int64_t used(int64_t bs) const { return page_table + bs * max_pages; }
};
}  // namespace

CudaGraphRunner::CudaGraphRunner(model::CausalLM& model, const KvBuffers& kv, int64_t max_bs, int64_t max_pages,
                                 parallel::GraphRegistry* registry, DataParallelDecode dp,
                                 const model::ProgressFn& progress, std::shared_ptr<GraphMemoryPool> pool)
    : model_(model), kv_(kv), max_bs_(max_bs), max_pages_(max_pages), dp_(dp), buckets_(cuda_graph_buckets(max_bs)) {
  LOOM_CHECK(dp.dp >= 1 && dp.replica >= 0 && dp.replica < dp.dp && dp.tp >= dp.dp, "CUDA graphs: replica ",
             dp.replica, " of ", dp.dp, " in a TP group of ", dp.tp);
  LOOM_CHECK(model.device().is_cuda(), "CUDA graphs need a model on a GPU, not ", model.device().str());
  LOOM_CHECK(max_bs >= 1 && max_pages >= 1, "CUDA graphs: max batch ", max_bs, ", max pages ", max_pages);
  CUDA_CHECK(cudaSetDevice(model.device().index));
  stream_ = cuda::current_stream(model.device().index);
  const MetaLayout m(max_bs_, max_pages_, dp_.dp);
  meta_len_ = m.total;
  meta_ = Tensor::zeros({meta_len_}, DType::i32, model.device());
  for (int j = 0; j < 2; ++j) {
    CUDA_CHECK(cudaMallocHost(&host_meta_[j], meta_len_ * sizeof(int32_t)));
    CUDA_CHECK(cudaEventCreateWithFlags(&uploaded_[j], cudaEventDisableTiming));
  }
  pool_ = pool ? std::move(pool) : make_graph_memory_pool();
  if (registry) registry->prepare_for_capture();
  // Largest first: the smaller graphs then reuse the pool blocks the largest one left.
  int64_t done = 0;
  for (auto it = buckets_.rbegin(); it != buckets_.rend(); ++it) {
    capture(*it, registry);
    if (progress) progress("capturing CUDA graphs", ++done, static_cast<int64_t>(buckets_.size()));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));  // replays may come from other threads' streams
}

CudaGraphRunner::~CudaGraphRunner() {
  for (auto& [bs, g] : graphs_)
    if (g.exec) cudaGraphExecDestroy(g.exec);
  for (int j = 0; j < 2; ++j) {
    if (host_meta_[j]) cudaFreeHost(host_meta_[j]);
    if (uploaded_[j]) cudaEventDestroy(uploaded_[j]);
  }
}

layers::ForwardContext CudaGraphRunner::context(int64_t bs) const {
  const MetaLayout m(max_bs_, max_pages_, dp_.dp);
  layers::ForwardContext c;
  c.num_seqs = bs;
  c.num_tokens = bs;
  c.max_pages = max_pages_;
  c.page_size = kv_.page_size;
  c.max_seq_len = max_pages_ * kv_.page_size;
  c.decode_only = true;
  c.kv = &kv_;
  // Host copies describe the padding batch (the device kernels of a decode step never read them).
  c.h_positions.assign(bs, 0);
  for (int64_t i = 0; i <= bs; ++i) c.h_token_starts.push_back(static_cast<int32_t>(i));
  c.h_start_pos.assign(bs, 0);
  c.h_page_table.assign(bs * max_pages_, 0);
  for (int64_t i = 0; i < bs; ++i) c.h_logit_rows.push_back(static_cast<int32_t>(i));
  c.positions = meta_.narrow(0, m.positions, bs);
  c.token_starts = meta_.narrow(0, m.token_starts, bs + 1);
  c.start_pos = meta_.narrow(0, m.start_pos, bs);
  c.logit_rows = meta_.narrow(0, m.logit_rows, bs);
  c.page_table = meta_.narrow(0, m.page_table, bs * max_pages_).view({bs, max_pages_});
  if (dp_.dp > 1) {  // every replica brings bs rows (model/rank_context.cc's fields, fixed)
    c.rank_tokens.assign(dp_.tp, bs);
    c.rank_logit_rows.assign(dp_.tp, bs);
    c.logit_order = meta_.narrow(0, m.logit_order, dp_.dp * bs);
  }
  return c;
}

void CudaGraphRunner::fill_inputs(const model::ForwardBatch& batch, int64_t bs, cudaStream_t s) {
  const MetaLayout m(max_bs_, max_pages_, dp_.dp);
  // This staging buffer's previous upload (two steps ago) must have left it before it is rewritten.
  const int j = next_staging_;
  next_staging_ ^= 1;
  CUDA_CHECK(cudaEventSynchronize(uploaded_[j]));
  int32_t* host = host_meta_[j];
  const int64_t used = m.used(bs);  // bs 1 in a run with graphs up to 128: 3.255 -> 3.112 ms (bench/NOTES.md)
  std::fill(host, host + used, 0);  // padding: token 0 at position 0 on page 0
  const int64_t n = static_cast<int64_t>(batch.seqs.size());
  for (int64_t i = 0; i <= bs; ++i) host[m.token_starts + i] = static_cast<int32_t>(i);
  for (int64_t i = 0; i < bs; ++i) host[m.logit_rows + i] = static_cast<int32_t>(i);
  for (int64_t i = 0; i < n; ++i) {
    // Batch row i is replica i % dp's local sequence i / dp, gathered at row (i % dp)·bs + i / dp.
    const int64_t replica = i % dp_.dp, local = i / dp_.dp;
    if (dp_.dp > 1) host[m.logit_order + i] = static_cast<int32_t>(replica * bs + local);
    if (replica != dp_.replica) continue;
    const auto& s = batch.seqs[i];
    LOOM_CHECK(s.tokens[0] >= 0 || batch.previous_ids, "CUDA graph step: token ", s.tokens[0],
               " is a placeholder but the batch has no previous ids");
    host[m.ids + local] = s.tokens[0];
    host[m.positions + local] = s.start_pos;
    host[m.start_pos + local] = s.start_pos;
    std::copy(s.page_table.begin(), s.page_table.end(), host + m.page_table + local * max_pages_);
  }
  CUDA_CHECK(cudaMemcpyAsync(meta_.data_ptr(), host, used * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaEventRecord(uploaded_[j], s));
  staged_ = host;
  // Placeholders (-1 - r) become row r of the previous step's ids, on the device, in order.
  if (batch.previous_ids) kernels::cuda::resolve_previous_ids(meta_.data<int32_t>() + m.ids, n, batch.previous_ids, s);
}

layers::ForwardContext CudaGraphRunner::staged_batch(int64_t bs) const {
  const MetaLayout m(max_bs_, max_pages_, dp_.dp);
  layers::ForwardContext c;
  c.num_seqs = c.num_tokens = bs;
  c.max_pages = max_pages_;
  c.page_size = kv_.page_size;
  c.decode_only = true;
  c.h_token_starts.assign(staged_ + m.token_starts, staged_ + m.token_starts + bs + 1);
  c.h_start_pos.assign(staged_ + m.start_pos, staged_ + m.start_pos + bs);
  return c;
}

void CudaGraphRunner::capture(int64_t bs, parallel::GraphRegistry* registry) {
  const layers::ForwardContext ctx = context(bs);
  const Tensor ids = meta_.narrow(0, 0, bs);
  model::ForwardBatch padding;
  fill_inputs(padding, bs, stream_);
  cuda::StreamGuard on_stream(stream_);
  GraphPoolGuard in_pool(pool_);
  model_.forward_device(ids, ctx);  // warm-up: lazy library setup happens outside the capture
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  Graph g;
  cudaGraph_t graph = nullptr;
  {
    parallel::GraphCaptureGuard capturing;
    // Thread-local: the ranks of a parallel run capture at once, each on its own thread, and one
    // rank's capture must not forbid the others' CUDA calls (global mode would).
    (void)layers::ops::cuda::take_replay_preps();  // none of an earlier capture's may leak into this one
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      g.logits = model_.forward_device(ids, ctx);
    } catch (...) {
      cuda::abandon_capture(stream_);  // leave the stream usable, then report the first error
      (void)layers::ops::cuda::take_replay_preps();
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    g.preps = layers::ops::cuda::take_replay_preps();
  }
  CUDA_CHECK(cudaGraphInstantiate(&g.exec, graph, 0));
  CUDA_CHECK(cudaGraphDestroy(graph));
  graphs_[bs] = std::move(g);
  (void)registry;
}

bool CudaGraphRunner::can_run(const model::ForwardBatch& batch) const {
  const int64_t n = static_cast<int64_t>(batch.seqs.size());
  if (n == 0 || n > max_bs_ * dp_.dp) return false;
  if (batch.previous_ids && dp_.dp > 1) return false;  // a replica's rows are not the batch's
  for (const auto& s : batch.seqs)
    if (s.tokens.size() != 1 || s.all_logits || static_cast<int64_t>(s.page_table.size()) > max_pages_) return false;
  return true;
}

Tensor CudaGraphRunner::replay(const model::ForwardBatch& batch) {
  LOOM_CHECK(can_run(batch), "CudaGraphRunner::replay: batch is not a decode step within the captured sizes");
  const int64_t n = static_cast<int64_t>(batch.seqs.size());
  const int64_t per_replica = (n + dp_.dp - 1) / dp_.dp;  // the busiest replica's share
  const int64_t bs = *std::lower_bound(buckets_.begin(), buckets_.end(), per_replica);
  const cudaStream_t s = cuda::current_stream(model_.device().index);
  fill_inputs(batch, bs, s);
  Graph& g = graphs_.at(bs);
  if (!g.preps.empty()) {
    const layers::ForwardContext staged = staged_batch(bs);
    for (const auto& prep : g.preps) prep(staged);
  }
  CUDA_CHECK(cudaGraphLaunch(g.exec, s));
  return g.logits.narrow(0, 0, n);
}
#endif

}  // namespace loom::runtime
