#include "loom/runtime/piecewise_graph_runner.h"

#include <algorithm>
#include <cstring>

#ifdef LOOM_HAVE_CUDA
#include "loom/cache/kv_pool.h"
#include "loom/layers/ops_cuda.h"
#include "loom/model/context.h"
#include "loom/parallel/graph_registry.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom::runtime {

std::vector<int64_t> piecewise_graph_buckets(int64_t max_tokens) {
  std::vector<int64_t> b;
  for (int64_t t = 8; t <= std::min<int64_t>(64, max_tokens); t += 8) b.push_back(t);
  for (int64_t base = 64; base < max_tokens; base *= 2)
    for (int64_t t = base + base / 4; t <= 2 * base && t <= max_tokens; t += base / 4) b.push_back(t);
  if (b.empty() || b.back() != max_tokens) b.push_back(max_tokens);
  return b;
}

#ifdef LOOM_HAVE_CUDA

PiecewiseGraphRunner::PiecewiseGraphRunner(model::CausalLM& model, int64_t max_tokens, int64_t page_size,
                                           std::shared_ptr<GraphMemoryPool> pool, const model::ProgressFn& progress)
    : model_(model), max_tokens_(max_tokens), buckets_(piecewise_graph_buckets(max_tokens)), pool_(std::move(pool)) {
  LOOM_CHECK(model.device().is_cuda(), "piecewise CUDA graphs need a model on a GPU, not ", model.device().str());
  LOOM_CHECK(max_tokens >= 1 && page_size >= 1, "piecewise CUDA graphs: max tokens ", max_tokens, ", page size ",
             page_size);
  if (!pool_) pool_ = make_graph_memory_pool();
  CUDA_CHECK(cudaSetDevice(model.device().index));
  stream_ = cuda::current_stream(model.device().index);
  inputs_ = Tensor::zeros({2 * max_tokens_ + 1}, DType::i32, model.device());
  for (Staging& s : staging_) CUDA_CHECK(cudaEventCreateWithFlags(&s.uploaded, cudaEventDisableTiming));
  // The capture's attention reads and writes only the scratch page 0 of a pool of its own.
  const cache::KvPool scratch(model.kv_layout(), 1, page_size, model.device());
  // Largest first: the smaller buckets then reuse the pool blocks the largest one left.
  int64_t done = 0;
  for (auto it = buckets_.rbegin(); it != buckets_.rend(); ++it) {
    capture(*it, scratch.buffers());
    if (progress) progress("capturing piecewise CUDA graphs", ++done, static_cast<int64_t>(buckets_.size()));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));  // the scratch pool goes now
}

PiecewiseGraphRunner::~PiecewiseGraphRunner() {
  for (auto& [bucket, g] : graphs_)
    for (cudaGraphExec_t e : g.pieces)
      if (e) cudaGraphExecDestroy(e);
  for (Staging& s : staging_) {
    if (s.uploaded) cudaEventSynchronize(s.uploaded);
    if (s.host) cudaFreeHost(s.host);
    if (s.uploaded) cudaEventDestroy(s.uploaded);
  }
}

bool PiecewiseGraphRunner::can_run(const model::ForwardBatch& batch) const {
  if (batch.previous_ids || batch.seqs.empty()) return false;
  const int64_t n = batch.num_tokens();
  return n <= max_tokens_ && n > static_cast<int64_t>(batch.seqs.size());  // not decode-only
}

layers::ForwardContext PiecewiseGraphRunner::stage(const model::ForwardBatch& batch, const KvBuffers& kv,
                                                   int64_t bucket, cudaStream_t s) {
  layers::ForwardContext c = model::make_host_context(batch, kv);
  const int64_t n = c.num_tokens, seqs = c.num_seqs, rows = static_cast<int64_t>(c.h_logit_rows.size());
  // Pinned layout: ids [bucket] | positions [bucket] | n | token_starts | start_pos | logit_rows | page_table.
  const int64_t dynamic = (seqs + 1) + seqs + rows + seqs * c.max_pages, need = 2 * bucket + 1 + dynamic;
  Staging& st = staging_[next_staging_];
  next_staging_ ^= 1;
  CUDA_CHECK(cudaEventSynchronize(st.uploaded));  // its previous upload has left it
  if (st.capacity < need) {
    if (st.host) CUDA_CHECK(cudaFreeHost(st.host));
    st.host = nullptr;
    st.capacity = std::max<int64_t>(need, 2 * st.capacity);
    CUDA_CHECK(cudaMallocHost(&st.host, st.capacity * sizeof(int32_t)));
  }
  int32_t* h = st.host;
  std::fill(h, h + 2 * bucket, 0);  // padding: token 0 at position 0
  int64_t t = 0;
  for (const auto& s : batch.seqs)
    for (int32_t id : s.tokens) h[t++] = id;
  std::copy(c.h_positions.begin(), c.h_positions.end(), h + bucket);
  h[2 * bucket] = static_cast<int32_t>(n);
  int32_t* d = h + 2 * bucket + 1;
  d = std::copy(c.h_token_starts.begin(), c.h_token_starts.end(), d);
  d = std::copy(c.h_start_pos.begin(), c.h_start_pos.end(), d);
  d = std::copy(c.h_logit_rows.begin(), c.h_logit_rows.end(), d);
  std::copy(c.h_page_table.begin(), c.h_page_table.end(), d);

  int32_t* in = inputs_.data<int32_t>();
  const size_t b = bucket * sizeof(int32_t);
  CUDA_CHECK(cudaMemcpyAsync(in, h, b, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaMemcpyAsync(in + max_tokens_, h + bucket, b, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaMemcpyAsync(in + 2 * max_tokens_, h + 2 * bucket, sizeof(int32_t), cudaMemcpyHostToDevice, s));
  Tensor meta = Tensor::empty({dynamic}, DType::i32, model_.device());  // lives as long as the context
  CUDA_CHECK(cudaMemcpyAsync(meta.data_ptr(), h + 2 * bucket + 1, dynamic * sizeof(int32_t), cudaMemcpyHostToDevice,
                             s));
  CUDA_CHECK(cudaEventRecord(st.uploaded, s));
  c.positions = inputs_.narrow(0, max_tokens_, n);
  c.valid_tokens = inputs_.narrow(0, 2 * max_tokens_, 1);
  int64_t at = 0;
  const auto field = [&](int64_t len) {
    Tensor f = meta.narrow(0, at, len);
    at += len;
    return f;
  };
  c.token_starts = field(seqs + 1);
  c.start_pos = field(seqs);
  c.logit_rows = field(rows);
  c.page_table = field(seqs * c.max_pages).view({seqs, c.max_pages});
  return c;
}

void PiecewiseGraphRunner::begin_piece() {
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
}

void PiecewiseGraphRunner::end_piece() {
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  size_t nodes = 0;
  cudaGraphExec_t exec = nullptr;
  cudaError_t err = cudaGraphGetNodes(graph, nullptr, &nodes);
  if (err == cudaSuccess && nodes > 0) err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_CHECK(err);
  capturing_->pieces.push_back(exec);
}

void PiecewiseGraphRunner::split(const char* op, EagerOp run, const layers::ForwardContext& capture_ctx) {
  LOOM_CHECK(capturing_, "piecewise CUDA graphs: ", op, " split a forward outside a capture");
  end_piece();
  run(capture_ctx);  // now, on the capture's batch: the next piece reads what it writes
  capturing_->ops.push_back(std::move(run));
  begin_piece();
}

void PiecewiseGraphRunner::capture(int64_t bucket, const KvBuffers& scratch) {
  // One sequence of `bucket` tokens on the scratch page.
  model::ForwardBatch fake;
  fake.seqs.resize(1);
  fake.seqs[0].tokens.assign(bucket, 0);
  fake.seqs[0].page_table.assign((bucket + scratch.page_size - 1) / scratch.page_size, 0);
  cuda::StreamGuard on_stream(stream_);
  GraphPoolGuard in_pool(pool_);
  const layers::ForwardContext ctx = stage(fake, scratch, bucket, stream_);
  const Tensor ids = inputs_.narrow(0, 0, bucket);
  (void)model_.forward_hidden(ids, ctx);  // warm-up: lazy library setup happens outside the capture
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  Graph g;
  capturing_ = &g;
  {
    layers::GraphSplitScope splitting(this);
    parallel::GraphCaptureGuard capture_guard;
    (void)layers::ops::cuda::take_replay_preps();
    try {
      begin_piece();
      g.hidden = model_.forward_hidden(ids, ctx);
      end_piece();
    } catch (...) {
      capturing_ = nullptr;
      cuda::abandon_capture(stream_);  // leave the stream usable, then report the first error
      for (cudaGraphExec_t e : g.pieces)
        if (e) cudaGraphExecDestroy(e);
      throw;
    }
    LOOM_CHECK(layers::ops::cuda::take_replay_preps().empty(),
               "piecewise CUDA graphs: an op inside a piece needs host work before each replay");
  }
  capturing_ = nullptr;
  LOOM_CHECK(g.pieces.size() == g.ops.size() + 1, "piecewise CUDA graphs: ", g.pieces.size(), " pieces around ",
             g.ops.size(), " eager ops");
  graphs_[bucket] = std::move(g);
}

Tensor PiecewiseGraphRunner::replay(const model::ForwardBatch& batch, const KvBuffers& kv) {
  LOOM_CHECK(can_run(batch), "PiecewiseGraphRunner::replay: the step is not a prefill of 1..", max_tokens_,
             " tokens without placeholders");
  const int64_t bucket = *std::lower_bound(buckets_.begin(), buckets_.end(), batch.num_tokens());
  const cudaStream_t s = cuda::current_stream(model_.device().index);  // the eager ops' stream too
  const layers::ForwardContext ctx = stage(batch, kv, bucket, s);
  Graph& g = graphs_.at(bucket);
  for (size_t i = 0; i < g.pieces.size(); ++i) {
    if (g.pieces[i]) CUDA_CHECK(cudaGraphLaunch(g.pieces[i], s));
    if (i < g.ops.size()) g.ops[i](ctx);
  }
  return model_.logits(g.hidden, ctx);
}

#endif

}  // namespace loom::runtime
