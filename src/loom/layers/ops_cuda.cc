// The CUDA branch of layers/ops.h: checks shapes and dtypes, allocates the outputs (through the
// caching allocator, so a CUDA-graph capture owns them), and launches kernels/cuda on the
// thread's current stream. Dense GEMMs go through cuBLAS (bf16 in, f32 accumulate).
#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>

#include "loom/kernels/cuda/flashinfer_mla.h"
#include "loom/kernels/cuda/flashinfer_prefill.h"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/sm90/moe_grouped_gemm.h"
#include "loom/layers/graph_split.h"
#include "loom/layers/ops_cuda.h"
#include "loom/layers/ops_cuda_util.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#include "loom/tensor/env.h"

namespace loom::layers::ops::cuda {
namespace kc = loom::kernels::cuda;

namespace {

// --profile-ops: events around each op on its stream, summed per op name by take_op_profile().
struct ProfileRecord {
  const char* op;
  cudaEvent_t start, stop;
};
bool g_profiling = false;
std::mutex g_records_mu;  // ranks that share a process record from their own threads
std::vector<ProfileRecord> g_records;

}  // namespace

cudaStream_t stream_for(const Tensor& t) {
  CUDA_CHECK(cudaSetDevice(t.device().index));
  return loom::cuda::current_stream(t.device().index);
}

void check_bf16(const Tensor& t, const char* op, const char* what) {
  LOOM_CHECK(t.device().is_cuda(), op, ": ", what, " ", t.str(), " is not on a GPU");
  LOOM_CHECK(t.dtype() == DType::bf16, op, ": ", what, " ", t.str(), " must be bf16");
  LOOM_CHECK(t.is_contiguous(), op, ": ", what, " ", t.str(), " must be contiguous");
}

void check_i32(const Tensor& t, const char* op, const char* what) {
  LOOM_CHECK(t.device().is_cuda() && t.dtype() == DType::i32 && t.is_contiguous(), op, ": ", what, " ", t.str(),
             " must be a contiguous i32 GPU tensor");
}

OpScope::OpScope(const char* op, const Tensor& t) {
  if (!g_profiling) return;
  stream_ = stream_for(t);
  op_ = op;
  CUDA_CHECK(cudaEventCreate(&start_));
  CUDA_CHECK(cudaEventCreate(&stop_));
  CUDA_CHECK(cudaEventRecord(start_, stream_));
}

OpScope::~OpScope() {
  if (!op_) return;
  if (cudaEventRecord(stop_, stream_) != cudaSuccess) return;
  std::lock_guard<std::mutex> lock(g_records_mu);
  g_records.push_back({op_, start_, stop_});
}

void set_op_profiling(bool on) { g_profiling = on; }

std::vector<OpTime> take_op_profile() {
  std::lock_guard<std::mutex> lock(g_records_mu);
  std::map<std::string, OpTime> by_op;
  for (const ProfileRecord& r : g_records) {
    CUDA_CHECK(cudaEventSynchronize(r.stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, r.start, r.stop));
    OpTime& t = by_op[r.op];
    t.op = r.op;
    t.ms += ms;
    ++t.calls;
    cudaEventDestroy(r.start);
    cudaEventDestroy(r.stop);
  }
  g_records.clear();
  std::vector<OpTime> out;
  for (auto& [name, t] : by_op) out.push_back(t);
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  return out;
}

Tensor embedding(const Tensor& table, const Tensor& ids) {
  OpScope scope("embedding", table);
  check_bf16(table, "embedding", "table");
  check_i32(ids, "embedding", "ids");
  const int64_t n = ids.numel(), dim = table.size(1);
  Tensor out = Tensor::empty({n, dim}, DType::bf16, table.device());
  kc::embedding(table.data_ptr(), ids.data<int32_t>(), out.data_ptr(), n, dim, table.size(0), stream_for(table));
  return out;
}

namespace {

Tensor linear_no_bias(const Tensor& x, const Tensor& w, int64_t k, int64_t n, int64_t m) {
  LOOM_CHECK(x.size(-1) == k, "linear: input ", x.str(), " against weight ", w.str());
  Shape shape = x.shape();
  shape.back() = n;
  Tensor y = Tensor::empty(shape, DType::bf16, x.device());
  if (m == 0) return y;
  // Decode-sized inputs stream the weight once through the GEMV kernel; cuBLAS reads small-M
  // products at a fraction of the bandwidth.
  if (kc::gemv_applies(m, k, x.data_ptr(), w.data_ptr())) {
    OpScope scope("linear (GEMV)", x);
    kc::gemv(x.data_ptr(), w.data_ptr(), y.data_ptr(), m, n, k, stream_for(x));
    return y;
  }
  OpScope scope("linear (cuBLAS)", x);
  stream_for(x);
  const float alpha = 1.0f, beta = 0.0f;
  // Row-major y[m, n] = x[m, k] · w[n, k]ᵀ is column-major yᵀ = w · xᵀ (w read transposed).
  CUBLAS_CHECK(cublasGemmEx(loom::cuda::cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                            static_cast<int>(m), static_cast<int>(k), &alpha, w.data_ptr(), CUDA_R_16BF,
                            static_cast<int>(k), x.data_ptr(), CUDA_R_16BF, static_cast<int>(k), &beta, y.data_ptr(),
                            CUDA_R_16BF, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return y;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias) {
  check_bf16(x, "linear", "input");
  check_bf16(w, "linear", "weight");
  if (bias) check_bf16(*bias, "linear", "bias");
  const int64_t k = w.size(1), n = w.size(0), m = x.numel() / k;
  LOOM_CHECK(!bias || bias->numel() == n, "linear: bias ", bias ? bias->str() : "", " for weight ", w.str());
  Tensor y = linear_no_bias(x, w, k, n, m);
  if (bias && m > 0) {
    OpScope scope("bias add", x);
    kc::add_bias(y.data_ptr(), bias->data_ptr(), m, n, stream_for(x));
  }
  return y;
}

std::vector<Tensor> linears(const Tensor& x, const std::vector<const Tensor*>& weights,
                            const std::vector<const Tensor*>& biases) {
  const auto bias = [&](size_t j) { return biases.empty() ? nullptr : biases[j]; };
  std::vector<Tensor> out;
  check_bf16(x, "linears", "input");
  const int64_t k = x.size(-1), m = x.numel() / k;
  bool one_launch = m > 0 && weights.size() <= static_cast<size_t>(kc::kMaxGemvTargets);
  for (const Tensor* w : weights) {
    check_bf16(*w, "linears", "weight");
    one_launch = one_launch && w->size(1) == k && kc::gemv_applies(m, k, x.data_ptr(), w->data_ptr());
  }
  if (!one_launch) {
    for (size_t j = 0; j < weights.size(); ++j) out.push_back(linear(x, *weights[j], bias(j)));
    return out;
  }
  std::vector<kc::GemvTarget> targets;
  for (const Tensor* w : weights) {
    Shape shape = x.shape();
    shape.back() = w->size(0);
    out.push_back(Tensor::empty(shape, DType::bf16, x.device()));
    targets.push_back({w->data_ptr(), out.back().data_ptr(), w->size(0)});
  }
  cudaStream_t s = stream_for(x);
  {
    OpScope scope("linears (one GEMV)", x);
    kc::gemv_multi(x.data_ptr(), targets.data(), static_cast<int>(targets.size()), m, k, s);
  }
  for (size_t j = 0; j < weights.size(); ++j)
    if (const Tensor* b = bias(j)) {
      check_bf16(*b, "linears", "bias");
      LOOM_CHECK(b->numel() == weights[j]->size(0), "linears: bias ", b->str(), " for weight ", weights[j]->str());
      OpScope scope("bias add", x);
      kc::add_bias(out[j].data_ptr(), b->data_ptr(), m, weights[j]->size(0), s);
    }
  return out;
}

Tensor rms_norm(const Tensor& x, const Tensor& w, float eps) {
  OpScope scope("rms_norm", x);
  check_bf16(x, "rms_norm", "input");
  check_bf16(w, "rms_norm", "weight");
  const int64_t dim = x.size(-1);
  Tensor y = Tensor::empty(x.shape(), DType::bf16, x.device());
  kc::rms_norm(x.data_ptr(), nullptr, w.data_ptr(), y.data_ptr(), x.numel() / dim, dim, eps, stream_for(x));
  return y;
}

Tensor add_rms_norm(Tensor& residual, const Tensor& x, const Tensor& w, float eps) {
  OpScope scope("add_rms_norm", x);
  check_bf16(residual, "add_rms_norm", "residual");
  check_bf16(x, "add_rms_norm", "input");
  check_bf16(w, "add_rms_norm", "weight");
  LOOM_CHECK(residual.shape() == x.shape(), "add_rms_norm: ", residual.str(), " += ", x.str());
  const int64_t dim = x.size(-1);
  Tensor y = Tensor::empty(x.shape(), DType::bf16, x.device());
  kc::rms_norm(x.data_ptr(), residual.data_ptr(), w.data_ptr(), y.data_ptr(), x.numel() / dim, dim, eps,
               stream_for(x));
  return y;
}

void add_(Tensor& residual, const Tensor& x) {
  OpScope scope("add_", x);
  check_bf16(residual, "add_", "residual");
  check_bf16(x, "add_", "input");
  LOOM_CHECK(residual.shape() == x.shape(), "add_: ", residual.str(), " += ", x.str());
  kc::add_inplace(residual.data_ptr(), x.data_ptr(), x.numel(), stream_for(x));
}

void qk_norm_rope(Tensor& q, Tensor& k, const Tensor* q_norm, const Tensor* k_norm, float eps, const Rope& rope,
                  const ForwardContext& ctx) {
  OpScope scope("qk_norm_rope", q);
  check_bf16(q, "qk_norm_rope", "q");
  check_bf16(k, "qk_norm_rope", "k");
  LOOM_CHECK(q.size(2) == k.size(2) && q.size(0) == k.size(0), "qk_norm_rope: q ", q.str(), " and k ", k.str());
  LOOM_CHECK(rope.inv_freq.device() == q.device() && rope.inv_freq.dtype() == DType::f32,
             "qk_norm_rope: inv_freq ", rope.inv_freq.str(), " must be f32 on ", q.device().str());
  if (q_norm) check_bf16(*q_norm, "qk_norm_rope", "q_norm");
  if (k_norm) check_bf16(*k_norm, "qk_norm_rope", "k_norm");
  check_i32(ctx.positions, "qk_norm_rope", "positions");
  kc::qk_norm_rope(q.data_ptr(), k.data_ptr(), q_norm ? q_norm->data_ptr() : nullptr,
                   k_norm ? k_norm->data_ptr() : nullptr, ctx.positions.data<int32_t>(),
                   rope.inv_freq.data<float>(), q.size(0), q.size(1), k.size(1), q.size(2), rope.rotary_dim,
                   rope.scaling, eps, stream_for(q));
}

namespace {

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }  // TMA / 16-byte loads

// Prefill/extend attention on FlashInfer's Hopper kernels (kernels/cuda/flashinfer_prefill.h)
// when the GPU is sm90 and the head size is one it instantiates; decode (captured in graphs) and
// everything else on loom's own kernel. LOOM_ATTENTION=native keeps prefill on loom's kernel too,
// for A/B runs (read at every call).
bool attention_use_flashinfer(const Tensor& q, const Tensor& out, int64_t hq, int64_t hk, int64_t d,
                              const ForwardContext& ctx, cudaStream_t s) {
  if (ctx.decode_only || ctx.num_seqs < 1) return false;
  if (env_is("LOOM_ATTENTION", "native")) return false;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(s, &capture));
  if (capture != cudaStreamCaptureStatusNone) return false;  // its plan copies from host memory
  return aligned(q.data_ptr()) && aligned(out.data_ptr()) &&
         kc::flashinfer_prefill_supports(q.device().index, hq, hk, d);
}

// Whether a FlashInfer prefill can read the keys from the step's own k/v rows rather than the cache:
// no sequence has cached keys before its new tokens (a fresh prompt, no prefix-cache hit, not a
// later chunk or a context-parallel half), and k/v are whole [T, hk, d] tensors. The ragged kernel
// loads K/V tiles by TMA; LOOM_FLASHINFER_RAGGED=0 keeps every prefill on the paged kernel.
bool attention_reads_new_rows(const Tensor& k, const Tensor& v, const ForwardContext& ctx) {
  if (ctx.cp_split || env_is("LOOM_FLASHINFER_RAGGED", "0")) return false;
  for (int64_t i = 0; i < ctx.num_seqs; ++i)
    if (ctx.h_start_pos[i] != 0) return false;
  return k.is_contiguous() && v.is_contiguous() && aligned(k.data_ptr()) && aligned(v.data_ptr()) &&
         k.size(0) == ctx.h_token_starts[ctx.num_seqs] && v.size(0) == k.size(0);
}

// One FlashInfer workspace (its schedule buffers) per rank thread and GPU, kept across steps.
kc::FlashInferPrefillWorkspace& flashinfer_workspace(int device) {
  thread_local std::map<int, std::unique_ptr<kc::FlashInferPrefillWorkspace>> workspaces;
  std::unique_ptr<kc::FlashInferPrefillWorkspace>& w = workspaces[device];
  if (!w) w = std::make_unique<kc::FlashInferPrefillWorkspace>();
  return *w;
}

// FlashInfer's MLA schedules per rank thread and GPU: one for eager steps (re-planned when the
// batch changes) and one that captured graphs read (re-planned before each replay).
kc::FlashInferMlaWorkspace& mla_workspace(int device, bool for_graphs) {
  thread_local std::map<std::pair<int, bool>, std::unique_ptr<kc::FlashInferMlaWorkspace>> workspaces;
  std::unique_ptr<kc::FlashInferMlaWorkspace>& w = workspaces[{device, for_graphs}];
  if (!w) w = std::make_unique<kc::FlashInferMlaWorkspace>(device);
  return *w;
}

// The replay preps registered by captures on this thread, one per workspace (every layer of a
// capture registers the same one).
std::map<const void*, ReplayPrep>& replay_preps() {
  thread_local std::map<const void*, ReplayPrep> preps;
  return preps;
}

std::vector<int32_t> key_counts(const ForwardContext& ctx) {
  std::vector<int32_t> kv_lens(ctx.num_seqs);
  for (int64_t i = 0; i < ctx.num_seqs; ++i)
    kv_lens[i] = ctx.h_start_pos[i] + (ctx.h_token_starts[i + 1] - ctx.h_token_starts[i]);
  return kv_lens;
}

// Latent attention over the cached keys [k_pe | c] with the value c read from them.
void attend_latent(const Tensor& q, Tensor& out, const ForwardContext& ctx, float scale, const kc::PagedKvArgs& kv,
                   cudaStream_t s) {
  const int device = q.device().index;
  const int64_t heads = q.size(1);
  const std::vector<int32_t> kv_lens = key_counts(ctx);
  const kc::MlaBatch batch{ctx.h_token_starts.data(), kv_lens.data(), ctx.num_seqs, ctx.max_pages};
  const kc::MlaArgs args{q.data_ptr(), kv.k_cache, kv.page_table, out.data_ptr(), q.size(0), heads, kv.page_size,
                         scale};
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(s, &capture));
  if (capture == cudaStreamCaptureStatusNone) {
    // The graphs' workspace too, now: its buffers cannot be allocated while a capture runs (a
    // graph runner's warm-up forward comes here first).
    (void)mla_workspace(device, true);
    OpScope scope("attention (latent, FlashInfer MLA)", q);
    mla_workspace(device, false).attend(batch, args, s);
    return;
  }
  kc::FlashInferMlaWorkspace& ws = mla_workspace(device, true);
  const int64_t shape = ws.plan(batch, heads, /*upload=*/false, s);  // the launch shape only
  ws.run(args, s);
  replay_preps()[&ws] = [&ws, heads, shape, device](const ForwardContext& replayed) {
    const std::vector<int32_t> lens = key_counts(replayed);
    const kc::MlaBatch b{replayed.h_token_starts.data(), lens.data(), replayed.num_seqs, replayed.max_pages};
    const int64_t got = ws.plan(b, heads, /*upload=*/true, loom::cuda::current_stream(device));
    LOOM_CHECK(got == shape, "FlashInfer MLA: a replay's schedule has ", got, " CTAs per cluster, its capture ",
               shape);
  };
}

}  // namespace

bool latent_attention_supported(int device, int64_t latent, int64_t rope) {
  return kc::flashinfer_mla_supports(device, latent, rope);
}

bool attention_folds_qk_norm_rope(const Tensor& q, int64_t kv_heads, const Rope& rope, const ForwardContext& ctx) {
  const int64_t d = q.size(-1);
  return ctx.decode_only && !ctx.cp_split && ctx.num_seqs > 0 && q.dim() == 3 &&
         kc::attention_fuses_qk_norm_rope(q.size(1), kv_heads, d, d, rope.rotary_dim);
}

std::vector<ReplayPrep> take_replay_preps() {
  std::vector<ReplayPrep> out;
  for (auto& [key, prep] : replay_preps()) out.push_back(std::move(prep));
  replay_preps().clear();
  return out;
}

namespace {

// V's head dim: the V cache's, or with an empty one (latent attention: the value is the key's tail) v's.
int64_t value_dim(const Tensor& vcache, const Tensor& v) { return vcache.size(2) > 0 ? vcache.size(2) : v.size(2); }

// The attention op, into `out` when it is given (a piecewise graph's fixed buffer), else into a new tensor.
Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, int64_t layer, const AttentionParams& params,
              const ForwardContext& ctx, Tensor out) {
  check_bf16(q, "attention", "q");
  check_bf16(k, "attention", "k");
  check_bf16(v, "attention", "v");
  const Tensor& kcache = ctx.kv->k[layer];
  const Tensor& vcache = ctx.kv->v[layer];
  check_bf16(kcache, "attention", "K cache");
  check_bf16(vcache, "attention", "V cache");
  // An empty V cache: the value is the key's tail and only FlashInfer's MLA kernel runs (below).
  const bool value_cached = vcache.size(2) > 0;
  const int64_t tokens = q.size(0), hq = q.size(1), hk = kcache.size(1), d = kcache.size(2);
  const int64_t dv = value_dim(vcache, v);
  LOOM_CHECK(k.size(1) == hk && k.size(2) == d && v.size(1) == hk && v.size(2) == dv && q.size(2) == d &&
                 (value_cached || params.value_in_key),
             "attention: q ", q.str(), ", k ", k.str(), ", v ", v.str(), " against the caches ", kcache.str(), ", ",
             vcache.str());
  kc::PagedKvArgs kv{kcache.data_ptr(), vcache.data_ptr(), ctx.page_table.data<int32_t>(),
                     ctx.token_starts.data<int32_t>(), ctx.start_pos.data<int32_t>(), ctx.num_seqs,
                     ctx.max_pages, ctx.page_size, hk, d, dv};
  cudaStream_t s = stream_for(q);
  // Latent attention with a latent FlashInfer's MLA kernel takes (DeepSeek's 512 + 64) runs there;
  // smaller latents (the test checkpoints) on loom's kernel below, which reads V from the V cache.
  // A context-parallel prefill needs nothing more: its two chunks are two sequences over the same
  // pages, every key before them already gathered into the cache (write_cp_kv).
  const bool latent = params.value_in_key && hk == 1 && dv < d && ctx.num_seqs > 0 &&
                      kc::flashinfer_mla_supports(q.device().index, dv, d - dv);
  LOOM_CHECK(value_cached || latent || ctx.num_seqs == 0, "attention: the V cache is empty, but a latent of ", dv,
             " + ", d - dv, " does not run on FlashInfer's MLA kernel here");
  // A decode step's K/V are stored by loom's attention kernel itself (one launch fewer per layer).
  const bool kernel_writes_kv = ctx.decode_only && !ctx.cp_split && !latent;
  if (!kernel_writes_kv) {
    OpScope scope("write_kv", q);
    kc::write_kv(kv, k.data_ptr(), value_cached ? v.data_ptr() : nullptr, ctx.positions.data<int32_t>(), tokens, s);
  }

  if (params.sinks)
    LOOM_CHECK(params.sinks->dtype() == DType::f32 && params.sinks->device() == q.device() &&
                   params.sinks->numel() == hq,
               "attention: sinks ", params.sinks->str(), " must be f32 [", hq, "] on ", q.device().str());
  if (out.defined())
    LOOM_CHECK(out.dtype() == DType::bf16 && out.is_contiguous() && out.shape() == (Shape{tokens, hq, dv}) &&
                   out.device() == q.device(),
               "attention: output ", out.str(), " for ", tokens, " tokens of ", hq, " heads of ", dv);
  else
    out = Tensor::empty({tokens, hq, dv}, DType::bf16, q.device());
  if (latent) {
    attend_latent(q, out, ctx, params.scale, kv, s);
    return out;
  }
  // Windows and sinks (gpt-oss) and V narrower than K (latent attention) stay on loom's kernel:
  // the FlashInfer wrapper has none of them.
  const bool plain = params.sliding_window == 0 && params.sinks == nullptr && dv == d;
  if (plain && attention_use_flashinfer(q, out, hq, hk, d, ctx, s)) {
    kc::FlashInferPrefillWorkspace& fi = flashinfer_workspace(q.device().index);
    const bool ragged = attention_reads_new_rows(k, v, ctx);
    bool planned = false;
    {
      // Host scheduling and one small copy, done once per step: later layers find the same batch.
      OpScope scope("attention plan (FlashInfer)", q);
      planned = ragged ? fi.plan_ragged(ctx.h_token_starts.data(), ctx.num_seqs, hq, hk, d, s)
                       : fi.plan(ctx.h_token_starts.data(), ctx.h_start_pos.data(), ctx.num_seqs, ctx.max_pages,
                                 ctx.page_size, hq, hk, d, s);
    }
    if (planned && ragged) {
      OpScope scope("attention (prefill, FlashInfer ragged)", q);
      fi.run_ragged(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), tokens, hq, hk, params.scale, s);
      return out;
    }
    if (planned) {
      OpScope scope("attention (prefill, FlashInfer)", q);
      fi.run(kv, q.data_ptr(), out.data_ptr(), tokens, hq, params.scale, s);
      return out;
    }
  }
  int64_t max_new = 1;
  if (!ctx.decode_only)
    for (int64_t i = 0; i < ctx.num_seqs; ++i)
      max_new = std::max<int64_t>(max_new, ctx.h_token_starts[i + 1] - ctx.h_token_starts[i]);
  const int splits = kc::attention_splits(ctx.num_seqs, hk, ctx.decode_only);
  Tensor workspace;
  if (splits > 1) workspace = Tensor::empty({splits, tokens, hq, dv + 1}, DType::f32, q.device());
  OpScope scope(ctx.decode_only ? "attention (decode, split keys)" : "attention (prefill)", q);
  kc::QkNormRope fold;
  if (params.pending) {
    const PendingQkNormRope& p = *params.pending;
    LOOM_CHECK(kernel_writes_kv && p.rope && p.rope->inv_freq.dtype() == DType::f32 &&
                   p.rope->inv_freq.device() == q.device(),
               "attention: a pending q/k norm and RoPE on a step that cannot fold them");
    if (p.q_norm) check_bf16(*p.q_norm, "attention", "q_norm");
    if (p.k_norm) check_bf16(*p.k_norm, "attention", "k_norm");
    fold = {p.q_norm ? p.q_norm->data_ptr() : nullptr, p.k_norm ? p.k_norm->data_ptr() : nullptr,
            p.rope->inv_freq.data<float>(), p.rope->scaling, p.eps};
  }
  kc::attention(kv, q.data_ptr(), out.data_ptr(), tokens, hq, params.scale, max_new, splits,
                splits > 1 ? workspace.data<float>() : nullptr, s, params.sliding_window,
                params.sinks ? params.sinks->data<float>() : nullptr, kernel_writes_kv ? k.data_ptr() : nullptr,
                kernel_writes_kv ? v.data_ptr() : nullptr, params.pending ? &fold : nullptr);
  return out;
}

// The same bytes without keeping them alive: a piecewise graph's eager op reads memory its pool
// hands out again in an order every replay repeats (layers/graph_split.h).
Tensor unowned(const Tensor& t) {
  LOOM_CHECK(t.is_contiguous(), "attention: a piecewise CUDA graph needs contiguous q/k/v, not ", t.str());
  return Tensor::wrap(t.data_ptr(), t.shape(), t.dtype(), t.device(), nullptr);
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t layer, const AttentionParams& params,
                 const ForwardContext& ctx) {
  GraphSplitter* splitter = GraphSplitter::active();
  if (!splitter) return attend(q, k, v, layer, params, ctx, Tensor());
  // A piecewise capture: the output lives at a fixed address the next piece reads; the op runs
  // between the pieces on views of the capture's q/k/v (their bytes stay put: graph_split.h).
  LOOM_CHECK(!params.pending && !ctx.cp_split && ctx.kv, "attention: a piecewise CUDA graph cannot capture this step");
  const int64_t tokens = q.size(0), hq = q.size(1), dv = value_dim(ctx.kv->v.at(layer), v);
  Tensor out = Tensor::empty({tokens, hq, dv}, DType::bf16, q.device());
  splitter->split(
      "attention",
      [p = params, layer, q = unowned(q), k = unowned(k), v = unowned(v), out = unowned(out)](const ForwardContext& c) {
        const int64_t n = c.num_tokens;
        LOOM_CHECK(n >= 1 && n <= q.size(0), "attention: a replay of ", n, " tokens in a graph of ", q.size(0));
        attend(q.narrow(0, 0, n), k.narrow(0, 0, n), v.narrow(0, 0, n), layer, p, c, out.narrow(0, 0, n));
        // The padding rows feed the MoE router: keep them finite (their bytes are other tensors' between steps).
        if (n < out.size(0)) {
          const size_t row = static_cast<size_t>(out.size(1) * out.size(2)) * sizeof(uint16_t);
          CUDA_CHECK(cudaMemsetAsync(static_cast<char*>(out.data_ptr()) + n * row, 0, (out.size(0) - n) * row,
                                     stream_for(out)));
        }
      },
      ctx);
  return out;
}

Tensor silu_and_mul(const Tensor& gate_up) {
  OpScope scope("silu_and_mul", gate_up);
  check_bf16(gate_up, "silu_and_mul", "input");
  const int64_t inter = gate_up.size(-1) / 2, m = gate_up.numel() / gate_up.size(-1);
  Tensor out = Tensor::empty({m, inter}, DType::bf16, gate_up.device());
  kc::silu_and_mul(gate_up.data_ptr(), out.data_ptr(), m, inter, stream_for(gate_up));
  return out;
}

Routing route_topk_softmax(const Tensor& router_logits, int64_t k, bool renormalize) {
  OpScope scope("route_topk_softmax", router_logits);
  check_bf16(router_logits, "route_topk_softmax", "logits");
  const int64_t t = router_logits.size(0), e = router_logits.size(1);
  LOOM_CHECK(k >= 1 && k <= e, "router: top-", k, " of ", e, " experts");
  Routing r{Tensor::empty({t, k}, DType::f32, router_logits.device()),
            Tensor::empty({t, k}, DType::i32, router_logits.device())};
  kc::route_topk(router_logits.data_ptr(), t, e, k, renormalize, r.weights.data<float>(), r.ids.data<int32_t>(),
                 stream_for(router_logits));
  return r;
}

Routing linear_route_topk_softmax(const Tensor& x, const Tensor& w, int64_t k, bool renormalize, Tensor* logits) {
  check_bf16(x, "linear_route_topk_softmax", "input");
  check_bf16(w, "linear_route_topk_softmax", "router weight");
  const int64_t hidden = w.size(1), e = w.size(0), t = x.numel() / std::max<int64_t>(hidden, 1);
  if (!(x.size(-1) == hidden && kc::router_topk_applies(t, hidden, e, k, x.data_ptr(), w.data_ptr()))) {
    Tensor l = linear(x, w, nullptr);
    if (logits) *logits = l;
    return route_topk_softmax(l, k, renormalize);
  }
  OpScope scope("router GEMV + top-k", x);
  Tensor l = Tensor::empty({t, e}, DType::bf16, x.device());
  Routing r{Tensor::empty({t, k}, DType::f32, x.device()), Tensor::empty({t, k}, DType::i32, x.device())};
  kc::router_topk(x.data_ptr(), w.data_ptr(), l.data_ptr(), t, hidden, e, k, renormalize, r.weights.data<float>(),
                  r.ids.data<int32_t>(), stream_for(x));
  if (logits) *logits = l;
  return r;
}

Routing route_grouped_topk_softmax(const Tensor& router_logits, const GroupedTopk& g) {
  OpScope scope("route_grouped_topk_softmax", router_logits);
  check_bf16(router_logits, "route_grouped_topk_softmax", "logits");
  const int64_t t = router_logits.size(0), e = router_logits.size(1);
  Routing r{Tensor::empty({t, g.k}, DType::f32, router_logits.device()),
            Tensor::empty({t, g.k}, DType::i32, router_logits.device())};
  kc::route_topk(router_logits.data_ptr(), t, e, g.k, g.renormalize, r.weights.data<float>(), r.ids.data<int32_t>(),
                 stream_for(router_logits), g.groups, g.topk_group, g.scale);
  return r;
}

// One strided-batched cuBLAS GEMM over the heads: head h's rows of x are x.stride(0) apart and
// its first element x.stride(1) after head h - 1's.
Tensor per_head_linear(const Tensor& x, const Tensor& w) {
  OpScope scope("per_head_linear (cuBLAS)", x);
  check_bf16(w, "per_head_linear", "w");
  LOOM_CHECK(x.dtype() == DType::bf16 && x.device() == w.device(), "per_head_linear: x ", x.str(), " must be bf16 on ",
             w.device().str());
  LOOM_CHECK(x.dim() == 3 && w.dim() == 3 && x.size(1) == w.size(0) && x.size(2) == w.size(2) &&
                 x.strides()[2] == 1 && w.is_contiguous(),
             "per_head_linear: x ", x.str(), " (last dim contiguous), w ", w.str());
  const int64_t t = x.size(0), heads = w.size(0), n = w.size(1), k = w.size(2);
  Tensor y = Tensor::empty({t, heads, n}, DType::bf16, x.device());
  if (t == 0) return y;
  stream_for(x);
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major per head: y_hᵀ [n, t] = w_h (read transposed) · x_hᵀ [k, t].
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      loom::cuda::cublas_handle(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(t),
      static_cast<int>(k), &alpha, w.data_ptr(), CUDA_R_16BF, static_cast<int>(k), n * k, x.data_ptr(), CUDA_R_16BF,
      static_cast<int>(x.strides()[0]), x.strides()[1], &beta, y.data_ptr(), CUDA_R_16BF, static_cast<int>(heads * n),
      n, static_cast<int>(heads), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return y;
}

namespace {

// A view as rows of `width` contiguous elements `pitch` apart (false when its dims do not flatten so).
bool as_rows(const Tensor& t, int64_t* rows, int64_t* pitch) {
  const int n = t.dim();
  if (n == 0 || t.strides()[n - 1] != 1) return false;
  *rows = t.numel() / std::max<int64_t>(t.size(-1), 1);
  *pitch = n >= 2 ? t.strides()[n - 2] : t.size(-1);
  for (int i = 0; i + 2 < n; ++i)
    if (t.size(i + 1) > 1 && t.strides()[i] != t.strides()[i + 1] * t.size(i + 1)) return false;
  return true;
}

}  // namespace

void copy_(Tensor& dst, const Tensor& src) {
  OpScope scope("copy_ (strided)", dst);
  LOOM_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype() && dst.device() == src.device(),
             "copy_: ", src.str(), " into ", dst.str());
  int64_t rows = 0, dpitch = 0, spitch = 0;
  LOOM_CHECK(as_rows(dst, &rows, &dpitch) && as_rows(src, &rows, &spitch), "copy_: ", src.str(), " into ", dst.str(),
             " needs rows of contiguous elements at one stride");
  if (rows == 0 || dst.size(-1) == 0) return;
  const size_t e = dtype_size(dst.dtype());
  CUDA_CHECK(cudaMemcpy2DAsync(dst.data_ptr(), dpitch * e, src.data_ptr(), spitch * e, dst.size(-1) * e, rows,
                               cudaMemcpyDeviceToDevice, stream_for(dst)));
}

namespace {

// The expert GEMMs of a batch: CUTLASS's Hopper grouped GEMM (kernels/cuda/sm90) on an sm90 GPU
// from kMoeCutlassMinSlots routed slots, else loom's own kernels. Measured on the Qwen3-30B-A3B
// shape (bench/NOTES.md, December 2026): CUTLASS is as fast at 128 slots (decode bs 16), faster
// from 256 (bs 32: 1%, bs 64: 3%, bs 128: 4%; prefills of 32-256 tokens up to 2x), slower below
// (bs 1-8, where the fused decode kernels run). LOOM_MOE_GEMM=native|cutlass forces one for A/B
// runs (cutlass then also takes the few-token batches); it is read at every call.
constexpr int64_t kMoeCutlassMinSlots = 256;
bool moe_use_cutlass(const Tensor& x, const Tensor& w_gate_up, const Tensor& w_down, int64_t slots, int64_t hidden,
                     int64_t inter, bool* forced) {
  *forced = env_is("LOOM_MOE_GEMM", "cutlass");
  if (env_is("LOOM_MOE_GEMM", "native")) return false;
  if (!*forced && slots < kMoeCutlassMinSlots) return false;
  const bool ok = kc::moe_sm90_available(x.device().index) &&
                  kc::moe_sm90_applies(hidden, inter, x.data_ptr(), w_gate_up.data_ptr(), w_down.data_ptr());
  if (*forced && !ok) {
    static std::once_flag warned;
    std::call_once(warned, [] {
      std::fprintf(stderr, "loom: LOOM_MOE_GEMM=cutlass but the CUTLASS grouped GEMM does not apply here "
                           "(needs an sm90 GPU, a build with CUTLASS, hidden and inter multiples of 8); "
                           "native kernels run\n");
    });
  }
  return ok;
}

}  // namespace

Tensor moe_experts(const Tensor& x, const Routing& routing, const Tensor& w_gate_up, const Tensor& w_down,
                   int64_t expert_begin, const ExpertOptions& opt) {
  check_bf16(x, "moe_experts", "input");
  check_bf16(w_gate_up, "moe_experts", "w_gate_up");
  check_bf16(w_down, "moe_experts", "w_down");
  check_i32(routing.ids, "moe_experts", "expert ids");
  LOOM_CHECK(routing.weights.dtype() == DType::f32 && routing.weights.is_contiguous(),
             "moe_experts: routing weights ", routing.weights.str(), " must be contiguous f32");
  const Device dev = x.device();
  const int64_t t = x.size(0), hidden = x.size(1), k = routing.ids.size(1);
  const int64_t experts = w_gate_up.size(0), inter = w_down.size(2);
  LOOM_CHECK(w_gate_up.size(1) == 2 * inter && w_gate_up.size(2) == hidden && w_down.size(1) == hidden,
             "moe_experts: w_gate_up ", w_gate_up.str(), " and w_down ", w_down.str(), " for hidden ", hidden);
  Tensor out = Tensor::empty({t, hidden}, DType::bf16, dev);
  if (t == 0) return out;
  cudaStream_t s = stream_for(x);
  const int64_t slots = t * k;
  bool forced = false;
  // Biased experts and the clamped SwiGLU (gpt-oss) take loom's grouped kernels with two epilogue
  // kernels; the fused decode kernels and CUTLASS's path do not have them.
  const bool plain = opt.plain();
  if (opt.gate_up_bias) check_bf16(*opt.gate_up_bias, "moe_experts", "gate_up bias");
  if (opt.down_bias) check_bf16(*opt.down_bias, "moe_experts", "down bias");
  const bool cutlass = plain && moe_use_cutlass(x, w_gate_up, w_down, slots, hidden, inter, &forced);
  // Few tokens: two GEMV-style kernels straight from the routing (no sort, no grouped tiles).
  if (plain && !(cutlass && forced) &&
      kc::moe_decode_applies(t, k, hidden, inter, x.data_ptr(), w_gate_up.data_ptr(), w_down.data_ptr())) {
    OpScope scope("moe decode (gate_up+silu, down+combine)", x);
    Tensor act = Tensor::empty({slots, inter}, DType::bf16, dev);
    kc::moe_decode(x.data_ptr(), routing.ids.data<int32_t>(), routing.weights.data<float>(), t, k, expert_begin,
                   experts, w_gate_up.data_ptr(), w_down.data_ptr(), hidden, inter, act.data_ptr(), out.data_ptr(),
                   s);
    return out;
  }
  const int block_m = kc::moe_block_m(slots, experts);
  const int64_t max_tiles = kc::moe_max_tiles(slots, experts, block_m);
  Tensor offsets = Tensor::empty({experts + 1}, DType::i32, dev);
  Tensor sorted_token = Tensor::empty({slots}, DType::i32, dev);
  Tensor sorted_weight = Tensor::empty({slots}, DType::f32, dev);
  Tensor slot_pos = Tensor::empty({slots}, DType::i32, dev);
  Tensor tiles = Tensor::empty({2 * max_tiles + 1}, DType::i32, dev);
  const int64_t plan_scratch = kc::moe_plan_scratch_ints(slots, experts);
  const Tensor block_counts = plan_scratch > 0 ? Tensor::empty({plan_scratch}, DType::i32, dev) : Tensor();
  kc::MoePlan plan{offsets.data<int32_t>(),      sorted_token.data<int32_t>(), sorted_weight.data<float>(),
                   slot_pos.data<int32_t>(),     tiles.data<int32_t>(),        tiles.data<int32_t>() + max_tiles,
                   tiles.data<int32_t>() + 2 * max_tiles, max_tiles, block_m,
                   plan_scratch > 0 ? block_counts.data<int32_t>() : nullptr};
  {
    OpScope scope("moe plan (sort by expert)", x);
    kc::moe_plan(routing.ids.data<int32_t>(), routing.weights.data<float>(), t, k, expert_begin, experts, plan, s);
  }
  if (cutlass) {
    // Rows in expert order (x copied to its slots' rows, later the down GEMM's output in place),
    // both GEMMs on CUTLASS with per-expert sizes read on the device, the routing weights applied in
    // the combine.
    Tensor a = Tensor::empty({slots, hidden}, DType::bf16, dev);
    Tensor gate_up = Tensor::empty({slots, 2 * inter}, DType::bf16, dev);
    Tensor act = Tensor::empty({slots, inter}, DType::bf16, dev);
    const size_t ws_bytes = kc::moe_sm90_workspace_bytes(experts, dev.index);
    Tensor ws = Tensor::empty({static_cast<int64_t>(ws_bytes)}, DType::u8, dev);
    const kc::MoeSm90Args args{x.data_ptr(), w_gate_up.data_ptr(), w_down.data_ptr(), plan.offsets,
                               plan.slot_pos, a.data_ptr(),         gate_up.data_ptr(), act.data_ptr(),
                               ws.data_ptr(), ws_bytes,             slots,              hidden,
                               inter,         experts,              k};
    {
      OpScope scope("moe gather (expert order)", x);
      kc::moe_sm90_prepare(args, s);
    }
    {
      OpScope scope("moe gate_up grouped GEMM (CUTLASS)", x);
      kc::moe_sm90_gate_up(args, s);
    }
    {
      OpScope scope("moe silu_and_mul", x);
      kc::silu_and_mul(gate_up.data_ptr(), act.data_ptr(), slots, inter, s);
    }
    {
      OpScope scope("moe down grouped GEMM (CUTLASS)", x);
      kc::moe_sm90_down(args, s);
    }
    OpScope scope("moe combine", x);
    kc::moe_combine_weighted(a.data_ptr(), plan.slot_pos, routing.weights.data<float>(), t, k, hidden,
                             out.data_ptr(), s);
    return out;
  }

  Tensor gate_up = Tensor::empty({slots, 2 * inter}, DType::bf16, dev);
  {
    OpScope scope("moe gate_up grouped GEMM", x);
    kc::moe_grouped_gemm(x.data_ptr(), plan.sorted_token, w_gate_up.data_ptr(), 2 * inter * hidden, 2 * inter,
                         hidden, gate_up.data_ptr(), nullptr, plan, s);
  }
  Tensor act = Tensor::empty({slots, inter}, DType::bf16, dev);
  if (plain) {
    OpScope scope("moe silu_and_mul", x);
    kc::silu_and_mul(gate_up.data_ptr(), act.data_ptr(), slots, inter, s);
  } else {
    OpScope scope("moe bias + activation", x);
    kc::moe_bias_activation(gate_up.data_ptr(), opt.gate_up_bias ? opt.gate_up_bias->data_ptr() : nullptr,
                            plan.offsets, experts, slots, inter, opt.swiglu_alpha, opt.swiglu_limit, act.data_ptr(),
                            s);
  }
  Tensor y = Tensor::empty({slots, hidden}, DType::bf16, dev);
  {
    OpScope scope("moe down grouped GEMM", x);
    kc::moe_grouped_gemm(act.data_ptr(), nullptr, w_down.data_ptr(), hidden * inter, hidden, inter, y.data_ptr(),
                         plan.sorted_weight, plan, s);
  }
  if (opt.down_bias) {
    OpScope scope("moe down bias", x);
    kc::moe_add_expert_bias(y.data_ptr(), opt.down_bias->data_ptr(), plan.sorted_weight, plan.offsets, experts, slots,
                            hidden, s);
  }
  OpScope scope("moe combine", x);
  kc::moe_combine(y.data_ptr(), plan.slot_pos, t, k, hidden, out.data_ptr(), s);
  return out;
}

Tensor gather_rows(const Tensor& x, const Tensor& rows) {
  OpScope scope("gather_rows", x);
  check_bf16(x, "gather_rows", "input");
  check_i32(rows, "gather_rows", "rows");
  const int64_t n = rows.numel(), dim = x.size(-1);
  Tensor out = Tensor::empty({n, dim}, DType::bf16, x.device());
  kc::gather_rows(x.data_ptr(), rows.data<int32_t>(), out.data_ptr(), n, dim, stream_for(x));
  return out;
}

void drop_routes_past(Routing& routing, const Tensor& valid_tokens) {
  OpScope scope("drop_routes_past", routing.ids);
  check_i32(routing.ids, "drop_routes_past", "expert ids");
  check_i32(valid_tokens, "drop_routes_past", "valid tokens");
  LOOM_CHECK(valid_tokens.numel() == 1 && valid_tokens.device() == routing.ids.device() && routing.ids.is_contiguous(),
             "drop_routes_past: valid tokens ", valid_tokens.str(), ", ids ", routing.ids.str());
  kc::drop_routes_past(routing.ids.data<int32_t>(), routing.ids.size(0), routing.ids.size(1),
                       valid_tokens.data<int32_t>(), stream_for(routing.ids));
}

}  // namespace loom::layers::ops::cuda
