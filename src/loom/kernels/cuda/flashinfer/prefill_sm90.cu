// The one translation unit that includes FlashInfer (kernels/cuda/flashinfer_prefill.h says what
// it offers). Compiled for sm_90a only, with FlashInfer's CUTLASS and CCCL (see CMakeLists.txt):
// each kernel instantiation here costs minutes of compile time, so this file changes rarely and
// instantiates exactly two: bf16, causal, head_dim 128 and 64, per-head schedules.
#include <flashinfer/attention/hopper/default_params.cuh>
#include <flashinfer/attention/hopper/prefill_sm90.cuh>
#include <flashinfer/attention/hopper/variants.cuh>
#include <flashinfer/attention/mask.cuh>
#include <flashinfer/attention/scheduler.cuh>

#include <algorithm>
#include <exception>
#include <mutex>
#include <vector>

#include "loom/kernels/cuda/flashinfer_prefill.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

using Params = flashinfer::BatchPrefillPagedParams<cutlass::bfloat16_t, cutlass::bfloat16_t, cutlass::bfloat16_t,
                                                   int32_t>;
using RaggedParams = flashinfer::BatchPrefillRaggedParams<cutlass::bfloat16_t, cutlass::bfloat16_t,
                                                          cutlass::bfloat16_t, int32_t>;
using Variant = flashinfer::StandardAttention;  // FlashInfer's DefaultAttention without soft cap

// FlashInfer's planner switches to one schedule shared by all heads (a second kernel variant, not
// instantiated here) past this many query tiles per head; loom's steps stay far below it.
constexpr int64_t kMaxWorksPerHead = 4096;

int cta_tile_q(int64_t d) { return d == 64 ? 192 : 128; }  // as PrefillSM90Plan picks it

bool device_is_sm90(int device) {
  static std::mutex mu;
  static std::vector<int> known;  // -1 unknown, 0 no, 1 yes
  std::lock_guard<std::mutex> lock(mu);
  if (device >= static_cast<int>(known.size())) known.resize(device + 1, -1);
  if (known[device] < 0) {
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    known[device] = major == 9 && minor == 0;  // the sm_90a cubin runs on sm_90 only
  }
  return known[device] == 1;
}

template <uint32_t D>
cudaError_t launch(Params& p, cudaStream_t s) {
  return flashinfer::BatchPrefillWithPagedKVCacheDispatched<D, D, flashinfer::MaskMode::kCausal,
                                                            /*LEFT_SLIDING_WINDOW=*/false,
                                                            /*SAME_SCHEDULE_FOR_ALL_HEADS=*/false, Variant>(
      p, /*enable_pdl=*/false, s);
}

template <uint32_t D>
cudaError_t launch_ragged(RaggedParams& p, cudaStream_t s) {
  return flashinfer::BatchPrefillWithRaggedKVCacheDispatched<D, D, flashinfer::MaskMode::kCausal,
                                                             /*LEFT_SLIDING_WINDOW=*/false,
                                                             /*SAME_SCHEDULE_FOR_ALL_HEADS=*/false, Variant>(
      p, /*enable_pdl=*/false, s);
}

}  // namespace

struct FlashInferPrefillWorkspace::Impl {
  int device = -1;
  void* dev_buf = nullptr;   // the schedule FlashInfer's kernel reads
  void* host_buf = nullptr;  // pinned: the plan writes here, then one async copy to dev_buf
  size_t capacity = 0;
  cudaEvent_t copied = nullptr;  // after the last plan's copy: host_buf may be rewritten
  cudaEvent_t used = nullptr;    // after the last run: dev_buf may be rewritten on another stream
  bool planned = false;
  flashinfer::PrefillPlanSM90Info info;
  // What the current plan was made for (plan() with the same values is a no-op).
  std::vector<int32_t> qo_indptr, kv_indptr, kv_len;
  int64_t max_pages = 0, page_size = 0, hq = 0, hk = 0, d = 0, tokens = 0;
  bool ragged = false;

  bool plan(const int32_t* token_starts_h, const int32_t* start_pos_h, int64_t num_seqs, int64_t max_pages,
            int64_t page_size, int64_t hq, int64_t hk, int64_t d, bool ragged, cudaStream_t s);
  // The schedule arrays of the current plan, in dev_buf.
  template <class P>
  void schedule_into(P& p) const;
  // What the paged and ragged kernels' parameters share: pointers, the schedule, the scale, strides
  // of q/out [T, hq, d] and of a key row [hk, d], head counts, causal with no window.
  template <class P>
  void common_params(P& p, const void* q, const void* k, const void* v, void* out, int64_t tokens, int64_t hq,
                     int64_t hk, float scale) const;

  void release() {
    // Teardown: a CUDA context already gone at thread exit makes these fail; nothing to do then.
    if (copied) cudaEventSynchronize(copied);
    if (used) cudaEventSynchronize(used);
    if (dev_buf) cudaFree(dev_buf);
    if (host_buf) cudaFreeHost(host_buf);
    dev_buf = host_buf = nullptr;
    capacity = 0;
  }
};

FlashInferPrefillWorkspace::FlashInferPrefillWorkspace() : impl_(std::make_unique<Impl>()) {}

FlashInferPrefillWorkspace::~FlashInferPrefillWorkspace() {
  impl_->release();
  if (impl_->copied) cudaEventDestroy(impl_->copied);
  if (impl_->used) cudaEventDestroy(impl_->used);
}

bool flashinfer_prefill_built() { return true; }

bool flashinfer_prefill_supports(int device, int64_t hq, int64_t hk, int64_t d) {
  return (d == 128 || d == 64) && hk > 0 && hq % hk == 0 && device_is_sm90(device);
}

bool FlashInferPrefillWorkspace::plan(const int32_t* token_starts_h, const int32_t* start_pos_h, int64_t num_seqs,
                                      int64_t max_pages, int64_t page_size, int64_t hq, int64_t hk, int64_t d,
                                      cudaStream_t s) {
  return impl_->plan(token_starts_h, start_pos_h, num_seqs, max_pages, page_size, hq, hk, d, /*ragged=*/false, s);
}

bool FlashInferPrefillWorkspace::plan_ragged(const int32_t* token_starts_h, int64_t num_seqs, int64_t hq, int64_t hk,
                                             int64_t d, cudaStream_t s) {
  if (num_seqs < 1) return false;
  // Ragged: the keys of sequence s are its own rows [token_starts[s], token_starts[s + 1]) of k/v,
  // as if in pages of one row each, none cached before.
  const std::vector<int32_t> no_prefix(static_cast<size_t>(num_seqs), 0);
  return impl_->plan(token_starts_h, no_prefix.data(), num_seqs, /*max_pages=*/0, /*page_size=*/1, hq, hk, d,
                     /*ragged=*/true, s);
}

bool FlashInferPrefillWorkspace::Impl::plan(const int32_t* token_starts_h, const int32_t* start_pos_h,
                                            int64_t num_seqs, int64_t max_pages, int64_t page_size, int64_t hq,
                                            int64_t hk, int64_t d, bool ragged, cudaStream_t s) {
  Impl& w = *this;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (!flashinfer_prefill_supports(device, hq, hk, d) || num_seqs < 1 || page_size < 1) return false;
  LOOM_CHECK(w.device < 0 || w.device == device, "FlashInfer workspace of GPU ", w.device, " used on GPU ", device);
  const int64_t tokens = token_starts_h[num_seqs] - token_starts_h[0];
  if ((tokens + cta_tile_q(d) - 1) / cta_tile_q(d) + num_seqs - 1 > kMaxWorksPerHead) return false;

  std::vector<int32_t> qo_indptr(token_starts_h, token_starts_h + num_seqs + 1);
  std::vector<int32_t> kv_indptr(num_seqs + 1), kv_len(num_seqs);
  for (int64_t i = 0; i < num_seqs; ++i) {
    kv_len[i] = start_pos_h[i] + (token_starts_h[i + 1] - token_starts_h[i]);
    if (ragged) {
      kv_indptr[i] = token_starts_h[i];  // the step's k/v rows
      continue;
    }
    kv_indptr[i] = static_cast<int32_t>(i * max_pages);  // the page table's rows, used in place
    LOOM_CHECK(kv_len[i] <= max_pages * page_size, "FlashInfer prefill: sequence ", i, " has ", kv_len[i],
               " keys but its page table row holds ", max_pages * page_size);
  }
  kv_indptr[num_seqs] = ragged ? token_starts_h[num_seqs] : static_cast<int32_t>(num_seqs * max_pages);
  if (w.planned && w.device == device && ragged == w.ragged && qo_indptr == w.qo_indptr && kv_len == w.kv_len &&
      max_pages == w.max_pages && page_size == w.page_size && hq == w.hq && hk == w.hk && d == w.d) {
    CUDA_CHECK(cudaStreamWaitEvent(s, w.copied, 0));  // a no-op on the stream that planned
    return true;
  }

  if (!w.copied) {
    CUDA_CHECK(cudaEventCreateWithFlags(&w.copied, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&w.used, cudaEventDisableTiming));
  }
  w.device = device;
  w.planned = false;
  // Eight int32 arrays of at most hq * (query tiles + sequences) entries (FlashInfer's work list,
  // one entry per head and query tile), each 16-byte aligned, plus the per-SM work_indptr.
  int sms = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const size_t works = static_cast<size_t>(hq) * static_cast<size_t>(tokens / cta_tile_q(d) + 2 * num_seqs);
  const size_t need = 8 * (works * sizeof(int32_t) + 16) + (sms + 1) * sizeof(int32_t) + 16;
  CUDA_CHECK(cudaEventSynchronize(w.copied));  // the pinned buffer is free to rewrite
  if (need > w.capacity) {
    w.release();
    const size_t cap = std::max<size_t>(need + need / 2, size_t{1} << 20);
    CUDA_CHECK(cudaMalloc(&w.dev_buf, cap));
    CUDA_CHECK(cudaMallocHost(&w.host_buf, cap));
    w.capacity = cap;
  }
  CUDA_CHECK(cudaStreamWaitEvent(s, w.used, 0));  // earlier runs (any stream) have read dev_buf
  try {
    CUDA_CHECK(flashinfer::PrefillSM90Plan<int32_t>(
        /*float_buffer=*/nullptr, 0, w.dev_buf, w.host_buf, w.capacity, w.info, qo_indptr.data(), kv_indptr.data(),
        kv_len.data(), static_cast<uint32_t>(tokens), static_cast<uint32_t>(num_seqs), static_cast<uint32_t>(hq),
        static_cast<uint32_t>(hk), static_cast<uint32_t>(d), static_cast<uint32_t>(d),
        static_cast<uint32_t>(page_size), /*causal=*/true, /*enable_cuda_graph=*/false, /*sizeof_dtype_o=*/2, s));
  } catch (const loom::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw loom::Error(loom::str("FlashInfer prefill plan: ", e.what()));
  }
  CUDA_CHECK(cudaEventRecord(w.copied, s));
  LOOM_CHECK(!w.info.same_schedule_for_all_heads, "FlashInfer prefill: ", tokens,
             " tokens need the shared-schedule kernel, which is not instantiated");
  w.qo_indptr = std::move(qo_indptr);
  w.kv_indptr = std::move(kv_indptr);
  w.kv_len = std::move(kv_len);
  w.max_pages = max_pages;
  w.page_size = page_size;
  w.hq = hq;
  w.hk = hk;
  w.d = d;
  w.tokens = tokens;
  w.ragged = ragged;
  w.planned = true;
  return true;
}

template <class P>
void FlashInferPrefillWorkspace::Impl::common_params(P& p, const void* q, const void* k, const void* v, void* out,
                                                     int64_t tokens, int64_t hq, int64_t hk, float scale) const {
  const auto bf = [](const void* x) { return static_cast<cutlass::bfloat16_t*>(const_cast<void*>(x)); };
  p.q_ptr = bf(q);
  p.k_ptr = bf(k);
  p.v_ptr = bf(v);
  p.o_ptr = bf(out);
  p.lse_ptr = nullptr;
  schedule_into(p);
  p.additional_params = {};
  p.additional_params.sm_scale = scale;
  // q and out [T, hq, d]; a key row [hk, d].
  p.q_stride_n = p.o_stride_n = hq * d;
  p.q_stride_h = p.o_stride_h = d;
  p.k_stride_n = p.v_stride_n = hk * d;
  p.k_stride_h = p.v_stride_h = d;
  p.nnz_qo = tokens;
  p.num_qo_heads = static_cast<int>(hq);
  p.num_kv_heads = static_cast<int>(hk);
  p.group_size = static_cast<int>(hq / hk);
  p.window_left = -1;
  p.causal = true;
}

template <class P>
void FlashInferPrefillWorkspace::Impl::schedule_into(P& p) const {
  using flashinfer::GetPtrFromBaseOffset;
  void* ib = dev_buf;
  p.qo_tile_indices = GetPtrFromBaseOffset<int32_t>(ib, info.qo_tile_indices_offset);
  p.qo_indptr = GetPtrFromBaseOffset<int32_t>(ib, info.qo_indptr_offset);
  p.kv_indptr = GetPtrFromBaseOffset<int32_t>(ib, info.kv_indptr_offset);
  p.qo_lens = GetPtrFromBaseOffset<int32_t>(ib, info.qo_len_offset);
  p.kv_lens = GetPtrFromBaseOffset<int32_t>(ib, info.kv_len_offset);
  p.head_indices = GetPtrFromBaseOffset<int32_t>(ib, info.head_indices_offset);
  p.work_indptr = GetPtrFromBaseOffset<int32_t>(ib, info.work_indptr_offset);
  p.batch_indices = GetPtrFromBaseOffset<int32_t>(ib, info.batch_indices_offset);
}

void FlashInferPrefillWorkspace::run(const PagedKvArgs& kv, const void* q, void* out, int64_t tokens, int64_t hq,
                                     float scale, cudaStream_t s) {
  Impl& w = *impl_;
  LOOM_CHECK(w.planned && !w.ragged, "FlashInfer prefill: run() without a paged plan");
  LOOM_CHECK(tokens == w.tokens && hq == w.hq && kv.hk == w.hk && kv.d == w.d && kv.page_size == w.page_size &&
                 kv.max_pages == w.max_pages && kv.num_seqs + 1 == static_cast<int64_t>(w.qo_indptr.size()),
             "FlashInfer prefill: the batch (", tokens, " tokens, ", kv.num_seqs, " sequences, hq ", hq, ", hk ",
             kv.hk, ", d ", kv.d, ") is not the one planned (", w.tokens, " tokens, ", w.qo_indptr.size() - 1,
             " sequences, hq ", w.hq, ", hk ", w.hk, ", d ", w.d, ")");
  if (tokens == 0) return;
  Params p{};
  w.common_params(p, q, kv.k_cache, kv.v_cache, out, tokens, hq, kv.hk, scale);
  p.kv_indices = const_cast<int32_t*>(kv.page_table);
  // K/V [pages, page_size, hk, d] (NHD).
  p.k_page_stride = p.v_page_stride = kv.page_size * kv.hk * kv.d;
  p.page_size = static_cast<int>(kv.page_size);
  const cudaError_t err = kv.d == 128 ? launch<128>(p, s) : launch<64>(p, s);
  LOOM_CHECK(err == cudaSuccess, "FlashInfer prefill attention: ", cudaGetErrorString(err));
  CUDA_CHECK(cudaEventRecord(w.used, s));
}

void FlashInferPrefillWorkspace::run_ragged(const void* q, const void* k, const void* v, void* out, int64_t tokens,
                                            int64_t hq, int64_t hk, float scale, cudaStream_t s) {
  Impl& w = *impl_;
  LOOM_CHECK(w.planned && w.ragged, "FlashInfer prefill: run_ragged() without a ragged plan");
  LOOM_CHECK(tokens == w.tokens && hq == w.hq && hk == w.hk, "FlashInfer prefill: the batch (", tokens,
             " tokens, hq ", hq, ", hk ", hk, ") is not the one planned (", w.tokens, " tokens, hq ", w.hq, ", hk ",
             w.hk, ")");
  if (tokens == 0) return;
  RaggedParams p{};
  w.common_params(p, q, k, v, out, tokens, hq, hk, scale);  // k and v [T, hk, d]
  p.nnz_kv = tokens;
  const cudaError_t err = w.d == 128 ? launch_ragged<128>(p, s) : launch_ragged<64>(p, s);
  LOOM_CHECK(err == cudaSuccess, "FlashInfer ragged prefill attention: ", cudaGetErrorString(err));
  CUDA_CHECK(cudaEventRecord(w.used, s));
}

}  // namespace loom::kernels::cuda
