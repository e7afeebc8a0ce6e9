// The translation unit that includes FlashInfer's MLA kernel (kernels/cuda/flashinfer_mla.h says
// what it offers). sm_90a only; one instantiation: bf16, causal, latent 512 + RoPE 64, the
// configuration FlashInfer picks for 221+ KiB of shared memory (2 stages, 64-key tiles, Q·K split
// between the two warpgroups). FlashInfer's own launcher dispatches over three shared-memory
// configurations (three instantiations, minutes of compile time each); this file launches the
// one kernel it needs itself.
#include <flashinfer/attention/mla.cuh>
#include <flashinfer/attention/scheduler.cuh>

#include <algorithm>
#include <exception>
#include <mutex>
#include <vector>

#include "loom/kernels/cuda/flashinfer_mla.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;
using Params = flashinfer::MLAParams<bf16, bf16, bf16, int32_t>;
using KTraits = flashinfer::mla::KernelTraits</*CAUSAL=*/true, /*NUM_STAGES=*/2, /*QK_SHARD=*/true,
                                              /*HEAD_DIM_CKV=*/512, /*HEAD_DIM_KPE=*/64, /*CTA_TILE_Q=*/64,
                                              /*CTA_TILE_KV=*/64, bf16, bf16, bf16, int32_t>;
constexpr size_t kSmem = sizeof(typename KTraits::SharedStorage);
constexpr int64_t kKeyDim = kMlaRope + kMlaLatent;  // a cache row: [k_pe | c]
// FlashInfer's MLAPlan sizes its work arrays for this many items (max_total_num_works) and does
// not check it. A query tile of 64 packed rows yields at most 1 + (its keys / the per-cluster key
// budget) items, so a schedule of `tiles` tiles has at most tiles + clusters items.
constexpr int64_t kMaxWorks = 16384;
constexpr int64_t kRowsPerTile = 64;
constexpr size_t kIntBytes = size_t{1} << 20;  // 11 arrays of kMaxWorks i32 + 5 of one per SM

struct DeviceFacts {
  bool runs = false;
  int sms = 0;
};

DeviceFacts device_facts(int device) {
  static std::mutex mu;
  static std::vector<int> state;  // -1 unknown, else sms (0: does not run the kernel)
  std::lock_guard<std::mutex> lock(mu);
  if (device >= static_cast<int>(state.size())) state.resize(device + 1, -1);
  if (state[device] < 0) {
    int major = 0, minor = 0, smem_sm = 0, smem_block = 0, sms = 0, coop = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
    // The sm_90a cubin runs on sm_90 only; FlashInfer picks this configuration from 221,696 bytes.
    const bool runs = major == 9 && minor == 0 && smem_sm >= 221696 && smem_block >= static_cast<int>(kSmem) && coop;
    state[device] = runs ? sms : 0;
  }
  return {state[device] > 0, state[device]};
}

template <typename T>
T* at(void* base, int64_t offset) {
  return flashinfer::GetPtrFromBaseOffset<T>(base, offset);
}

}  // namespace

bool flashinfer_mla_supports(int device, int64_t latent, int64_t rope) {
  return latent == kMlaLatent && rope == kMlaRope && device_facts(device).runs;
}

struct FlashInferMlaWorkspace::Impl {
  int device = -1, sms = 0;
  int64_t schedule_tiles = 0;  // query tiles attend() puts in one schedule
  void* int_dev = nullptr;
  void* int_host = nullptr;  // pinned: the planner writes here, one async copy moves it to int_dev
  std::vector<char> scratch_host;  // where a plan without upload writes
  void* float_dev = nullptr;  // partial outputs of split key ranges
  size_t float_bytes = 0;
  cudaEvent_t copied = nullptr;  // after the last upload: int_host may be rewritten
  cudaEvent_t used = nullptr;    // after the last eager run: int_dev may be rewritten on another stream
  bool upload_pending = false;
  bool planned = false;
  bool kernel_configured = false;
  flashinfer::MLAPlanInfo info{};
  int64_t heads = 0;
  // What the current device schedule was made for (attend() with the same batch re-uses it).
  std::vector<int32_t> qo_indptr, kv_indptr, kv_len;

  // Plans one schedule (its qo_indptr are absolute token rows, consecutive).
  // A plan without upload (a capture's: only its launch shape is used) goes to plain host memory:
  // the pinned buffer may still feed an earlier replay's copy, and waiting for that copy is not
  // allowed while a capture runs.
  void plan_one(std::vector<int32_t> qo, std::vector<int32_t> kvi, std::vector<int32_t> kvl, int64_t h, bool upload,
                cudaStream_t s) {
    if (upload && upload_pending) CUDA_CHECK(cudaEventSynchronize(copied));  // the pinned buffer is free
    if (upload) upload_pending = false;
    if (!upload) scratch_host.resize(kIntBytes);
    planned = false;
    size_t staged = 0;
    try {
      CUDA_CHECK(flashinfer::MLAPlan<int32_t>(float_dev, float_bytes, int_dev, upload ? int_host : scratch_host.data(),
                                              kIntBytes, info, staged,
                                              qo.data(), kvi.data(), kvl.data(),
                                              static_cast<uint32_t>(kvl.size()), static_cast<uint32_t>(h),
                                              static_cast<uint32_t>(kMlaLatent), /*causal=*/true, s));
    } catch (const loom::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw loom::Error(loom::str("FlashInfer MLA plan: ", e.what()));
    }
    if (upload) {
      CUDA_CHECK(cudaStreamWaitEvent(s, used, 0));  // earlier runs on any stream have read int_dev
      CUDA_CHECK(cudaMemcpyAsync(int_dev, int_host, staged, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(cudaEventRecord(copied, s));
      upload_pending = true;
    }
    qo_indptr = std::move(qo);
    kv_indptr = std::move(kvi);
    kv_len = std::move(kvl);
    heads = h;
    planned = true;
  }

  void launch(const MlaArgs& a, cudaStream_t s, bool record_use) {
    LOOM_CHECK(planned && a.heads == heads, "FlashInfer MLA: run() without a plan for ", a.heads, " heads");
    const auto kernel = flashinfer::mla::BatchMLAPagedAttentionKernel<KTraits, Params>;
    if (!kernel_configured) {
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem)));
      kernel_configured = true;
    }
    Params p{};
    bf16* q = static_cast<bf16*>(const_cast<void*>(a.q));
    bf16* k = static_cast<bf16*>(const_cast<void*>(a.k_cache));
    p.q_pe = q;
    p.q_nope = q + kMlaRope;
    p.kpe = k;
    p.ckv = k + kMlaRope;
    p.partial_o = at<bf16>(float_dev, info.partial_o_offset);
    p.partial_lse = at<float>(float_dev, info.partial_lse_offset);
    p.final_o = static_cast<bf16*>(a.out);
    p.final_lse = nullptr;
    const auto ints = [&](int64_t offset) { return at<int32_t>(int_dev, offset); };  // the schedule's arrays
    p.q_indptr = ints(info.q_indptr_offset);
    p.kv_indptr = ints(info.kv_indptr_offset);
    p.partial_indptr = ints(info.partial_indptr_offset);
    p.merge_packed_offset_start = ints(info.merge_packed_offset_start_offset);
    p.merge_packed_offset_end = ints(info.merge_packed_offset_end_offset);
    p.merge_partial_packed_offset_start = ints(info.merge_partial_packed_offset_start_offset);
    p.merge_partial_packed_offset_end = ints(info.merge_partial_packed_offset_end_offset);
    p.merge_partial_stride = ints(info.merge_partial_stride_offset);
    p.q_len = ints(info.q_len_offset);
    p.kv_len = ints(info.kv_len_offset);
    p.q_start = ints(info.q_start_offset);
    p.kv_start = ints(info.kv_start_offset);
    p.kv_end = ints(info.kv_end_offset);
    p.work_indptr = ints(info.work_indptr_offset);
    p.kv_indices = const_cast<int32_t*>(a.page_table);
    p.block_size = flashinfer::uint_fastdiv(static_cast<uint32_t>(a.page_size));
    p.num_heads = flashinfer::uint_fastdiv(static_cast<uint32_t>(a.heads));
    p.q_nope_stride_n = p.q_pe_stride_n = static_cast<uint32_t>(a.heads * kKeyDim);
    p.q_nope_stride_h = p.q_pe_stride_h = static_cast<uint32_t>(kKeyDim);
    p.ckv_stride_page = p.kpe_stride_page = static_cast<uint32_t>(a.page_size * kKeyDim);
    p.ckv_stride_n = p.kpe_stride_n = static_cast<uint32_t>(kKeyDim);
    p.o_stride_n = static_cast<uint32_t>(a.heads * kMlaLatent);
    p.o_stride_h = static_cast<uint32_t>(kMlaLatent);
    p.sm_scale = a.scale;
    p.return_lse_base_on_e = false;
    void* args[] = {&p};
    // Cooperative: the grid syncs once between the attention and the merge of split key ranges.
    CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel),
                                           dim3(static_cast<unsigned>(info.num_blks_x),
                                                static_cast<unsigned>(info.num_blks_y)),
                                           dim3(32, 4, 2), args, kSmem, s));
    if (record_use) CUDA_CHECK(cudaEventRecord(used, s));
  }
};

FlashInferMlaWorkspace::FlashInferMlaWorkspace(int device, int64_t tiles_per_schedule)
    : impl_(std::make_unique<Impl>()) {
  const DeviceFacts f = device_facts(device);
  LOOM_CHECK(f.runs, "FlashInfer MLA: GPU ", device, " cannot run the kernel (sm_90 with 221 KiB of shared memory)");
  Impl& w = *impl_;
  w.device = device;
  w.sms = f.sms;
  w.schedule_tiles = kMaxWorks - f.sms - 8;
  if (tiles_per_schedule > 0) w.schedule_tiles = std::min(w.schedule_tiles, tiles_per_schedule);
  // Partial outputs: FlashInfer's planner reserves 2 × clusters × cluster rows (= 2 × SMs × 64)
  // rows of 512 outputs, and their log-sum-exps.
  const size_t rows = 2 * static_cast<size_t>(f.sms) * kRowsPerTile;
  w.float_bytes = rows * kMlaLatent * sizeof(bf16) + rows * sizeof(float) + 1024;
  CUDA_CHECK(cudaMalloc(&w.int_dev, kIntBytes));
  CUDA_CHECK(cudaMallocHost(&w.int_host, kIntBytes));
  CUDA_CHECK(cudaMalloc(&w.float_dev, w.float_bytes));
  CUDA_CHECK(cudaEventCreateWithFlags(&w.copied, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&w.used, cudaEventDisableTiming));
}

FlashInferMlaWorkspace::~FlashInferMlaWorkspace() {
  Impl& w = *impl_;
  // Teardown: a CUDA context already gone at thread exit makes these fail; nothing to do then.
  if (w.copied) cudaEventSynchronize(w.copied);
  if (w.used) cudaEventSynchronize(w.used);
  if (w.int_dev) cudaFree(w.int_dev);
  if (w.int_host) cudaFreeHost(w.int_host);
  if (w.float_dev) cudaFree(w.float_dev);
  if (w.copied) cudaEventDestroy(w.copied);
  if (w.used) cudaEventDestroy(w.used);
}

namespace {

void check_batch(const MlaBatch& b, const MlaArgs& a) {
  LOOM_CHECK(b.num_seqs >= 1 && a.heads >= 1 && a.page_size >= 1, "FlashInfer MLA: empty batch or shape");
  LOOM_CHECK(b.token_starts[b.num_seqs] - b.token_starts[0] == a.tokens, "FlashInfer MLA: ", a.tokens,
             " query rows but the batch holds ", b.token_starts[b.num_seqs] - b.token_starts[0]);
  for (int64_t i = 0; i < b.num_seqs; ++i) {
    const int64_t n = b.token_starts[i + 1] - b.token_starts[i];
    LOOM_CHECK(n >= 0 && b.kv_lens[i] >= n && b.kv_lens[i] <= b.max_pages * a.page_size, "FlashInfer MLA: sequence ",
               i, " has ", n, " new tokens and ", b.kv_lens[i], " keys (its page table row holds ",
               b.max_pages * a.page_size, ")");
  }
}

int64_t tiles_of(int64_t rows, int64_t heads) { return (rows * heads + kRowsPerTile - 1) / kRowsPerTile; }

}  // namespace

void FlashInferMlaWorkspace::attend(const MlaBatch& b, const MlaArgs& a, cudaStream_t s) {
  Impl& w = *impl_;
  check_batch(b, a);
  if (a.tokens == 0) return;
  const int64_t budget = w.schedule_tiles;
  std::vector<int32_t> qo{b.token_starts[0]}, kvi, kvl;
  int64_t tiles = 0;
  bool whole = true;  // one schedule for the whole batch
  const auto flush = [&] {
    if (kvl.empty()) return;
    kvi.push_back(0);  // kv_indptr has S + 1 entries; the last one is not read
    const bool same = whole && w.planned && w.heads == a.heads && qo == w.qo_indptr && kvl == w.kv_len &&
                      kvi == w.kv_indptr;
    if (!same) w.plan_one(qo, kvi, kvl, a.heads, /*upload=*/true, s);
    w.launch(a, s, /*record_use=*/true);
    qo.assign(1, qo.back());
    kvi.clear();
    kvl.clear();
    tiles = 0;
  };
  for (int64_t i = 0; i < b.num_seqs; ++i) {
    const int32_t begin = b.token_starts[i], end = b.token_starts[i + 1];
    for (int32_t row = begin; row < end;) {
      const int64_t room_rows = (budget - tiles) * kRowsPerTile / a.heads;
      if (room_rows < 1) {
        whole = false;
        flush();
        continue;
      }
      const int32_t take = static_cast<int32_t>(std::min<int64_t>(end - row, room_rows));
      qo.push_back(row + take);
      kvi.push_back(static_cast<int32_t>(i * b.max_pages));
      kvl.push_back(b.kv_lens[i] - (end - (row + take)));  // keys up to this piece's last query
      tiles += tiles_of(take, a.heads);
      row += take;
    }
  }
  flush();
}

int64_t FlashInferMlaWorkspace::plan(const MlaBatch& b, int64_t heads, bool upload, cudaStream_t s) {
  Impl& w = *impl_;
  std::vector<int32_t> qo(b.token_starts, b.token_starts + b.num_seqs + 1), kvi, kvl(b.kv_lens, b.kv_lens + b.num_seqs);
  int64_t tiles = 0;
  for (int64_t i = 0; i < b.num_seqs; ++i) {
    kvi.push_back(static_cast<int32_t>(i * b.max_pages));
    tiles += tiles_of(qo[i + 1] - qo[i], heads);
    LOOM_CHECK(qo[i + 1] >= qo[i] && kvl[i] >= qo[i + 1] - qo[i], "FlashInfer MLA: sequence ", i, " has ",
               qo[i + 1] - qo[i], " new tokens but ", kvl[i], " keys");
  }
  kvi.push_back(static_cast<int32_t>(b.num_seqs * b.max_pages));
  LOOM_CHECK(b.num_seqs >= 1 && tiles <= kMaxWorks - w.sms - 8, "FlashInfer MLA: a batch of ", b.num_seqs,
             " sequences and ", qo.back() - qo.front(), " tokens needs more than one schedule (graph use)");
  w.plan_one(std::move(qo), std::move(kvi), std::move(kvl), heads, upload, s);
  return w.info.num_blks_x;
}

void FlashInferMlaWorkspace::run(const MlaArgs& a, cudaStream_t s) {
  Impl& w = *impl_;
  LOOM_CHECK(w.planned && a.tokens == w.qo_indptr.back() - w.qo_indptr.front(), "FlashInfer MLA: run() of ",
             a.tokens, " tokens against a plan of ", w.planned ? w.qo_indptr.back() - w.qo_indptr.front() : 0);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(s, &capture));
  w.launch(a, s, /*record_use=*/capture == cudaStreamCaptureStatusNone);
}

}  // namespace loom::kernels::cuda
