// The expert GEMMs of prefill-sized MoE batches on CUTLASS's Hopper grouped GEMM (see
// moe_grouped_gemm.h). Both GEMMs take bf16 A row-major [M, K], bf16 B = the expert's [N, K]
// row-major weight, i.e. column-major K x N, bf16 D row-major [M, N], f32 accumulation, clusters of
// two CTAs along N (they share the A tile by TMA multicast), warp-specialized persistent kernels,
// TMA epilogue: gate/up on 128x256x64 tiles with both math warp groups on a tile (cooperative),
// down on 128x128x64 tiles a warp group (ping-pong: one group's epilogue under the other's main
// loop, which its short K = inter needs). Per-expert problem
// sizes and pointers are written on the device by prepare_kernel from moe_plan's offsets, so the
// group count is always the number of local experts; an expert with no rows is a group of no tiles
// that the tile scheduler skips.
//
// This file is compiled for sm_90a only (its own CMake target): the wgmma/TMA code has no use for
// the project's portable PTX, and one architecture halves the compile time.
#include "loom/kernels/cuda/sm90/moe_grouped_gemm.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>

#include "loom/tensor/cuda_check.h"
#include "loom/tensor/error.h"

#if defined(LOOM_WITH_CUTLASS)
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/group_array_problem_shape.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"
#endif

namespace loom::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

// ---------------- weighted combine ----------------
// One block per token; each thread sums 8 consecutive columns (16-byte loads) when h % 8 == 0.
template <bool VEC>
__global__ void combine_weighted_kernel(const bf16* y, const int32_t* slot_pos, const float* weights, int k, int64_t h,
                                        bf16* out) {
  const int64_t t = blockIdx.x;
  if constexpr (VEC) {
    for (int64_t c = threadIdx.x * 8; c < h; c += blockDim.x * 8) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int j = 0; j < k; ++j) {
        const int32_t p = slot_pos[t * k + j];
        if (p < 0) continue;
        const float w = weights[t * k + j];
        const uint4 raw = *reinterpret_cast<const uint4*>(y + static_cast<int64_t>(p) * h + c);
        const bf16* v = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] += w * __bfloat162float(v[i]);
      }
      uint4 packed;
      bf16* o = reinterpret_cast<bf16*>(&packed);
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = __float2bfloat16(acc[i]);
      *reinterpret_cast<uint4*>(out + t * h + c) = packed;
    }
  } else {
    for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
      float acc = 0;
      for (int j = 0; j < k; ++j) {
        const int32_t p = slot_pos[t * k + j];
        if (p >= 0) acc += weights[t * k + j] * __bfloat162float(y[static_cast<int64_t>(p) * h + c]);
      }
      out[t * h + c] = __float2bfloat16(acc);
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

[[maybe_unused]] int device_cc(int device, int* sms) {
  static std::mutex mu;
  static int cached_cc[64], cached_sms[64];
  static bool known[64] = {};
  if (device < 0 || device >= 64) return 0;
  std::lock_guard<std::mutex> lock(mu);
  if (!known[device]) {
    int major = 0, minor = 0, count = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    cached_cc[device] = major * 10 + minor;
    cached_sms[device] = count;
    known[device] = true;
  }
  if (sms) *sms = cached_sms[device];
  return cached_cc[device];
}

// The current device, and its SM count into *sms.
[[maybe_unused]] int current_device(int* sms) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  device_cc(device, sms);
  return device;
}

#if defined(LOOM_WITH_CUTLASS)
using namespace cute;

// ---------------- the CUTLASS kernels ----------------
using ProblemShape = cutlass::gemm::GroupProblemShape<Shape<int, int, int>>;  // (M, N, K) per group
using Element = cutlass::bfloat16_t;
using LayoutA = cutlass::layout::RowMajor;     // activations [M, K]
using LayoutB = cutlass::layout::ColumnMajor;  // K x N column-major = the expert weight [N, K] row-major
using LayoutD = cutlass::layout::RowMajor;     // [M, N]
constexpr int kAlign = 128 / cutlass::sizeof_bits<Element>::value;  // 8 elements = 16 bytes (TMA)
using ClusterShape = Shape<_1, _2, _1>;

// A grouped GEMM of one tile shape and schedule: cooperative (both math warp groups on one tile)
// or ping-pong (each warp group its own tile, one's epilogue under the other's main loop).
template <class TileShape, class MainloopSchedule, class EpilogueSchedule>
struct GroupedGemm {
  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,  // accumulator, compute
      void, LayoutD*, kAlign,                                         // no C operand (beta = 0)
      Element, LayoutD*, kAlign, EpilogueSchedule>::CollectiveOp;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, LayoutA*, kAlign, Element, LayoutB*, kAlign,
      float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, CollectiveMainloop, CollectiveEpilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};
// 128x256 tiles, cooperative: the gate/up GEMM.
using Cooperative = GroupedGemm<Shape<_128, _256, _64>, cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative,
                                cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative>;
// 128x128 tiles a warp group, ping-pong: the down GEMM, whose short K leaves the cooperative
// kernel's epilogue exposed (LOOM_MOE_PINGPONG below).
using Pingpong = GroupedGemm<Shape<_128, _128, _64>, cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong,
                             cutlass::epilogue::PtrArrayTmaWarpSpecializedPingpong>;
using StrideA = typename Cooperative::Kernel::InternalStrideA;
using StrideB = typename Cooperative::Kernel::InternalStrideB;
using StrideD = typename Cooperative::Kernel::InternalStrideD;
static_assert(std::is_same_v<StrideA, typename Pingpong::Kernel::InternalStrideA> &&
                  std::is_same_v<StrideB, typename Pingpong::Kernel::InternalStrideB> &&
                  std::is_same_v<StrideD, typename Pingpong::Kernel::InternalStrideD>,
              "both kernels read one set of per-group arguments");
using Shape3 = typename ProblemShape::UnderlyingProblemShape;

// One GEMM's per-group argument arrays, in the workspace.
struct GroupArgs {
  Shape3* shapes;
  const Element** a;
  const Element** b;
  Element** d;
  StrideA* sa;
  StrideB* sb;
  StrideD* sd;
};

// Workspace: [gate_up GroupArgs arrays][down GroupArgs arrays][CUTLASS workspace], 256-byte aligned parts.
constexpr size_t kPartAlign = 256;
size_t round_up(size_t v) { return (v + kPartAlign - 1) / kPartAlign * kPartAlign; }
size_t group_args_bytes(int64_t e) {
  const size_t n = static_cast<size_t>(e);
  return round_up(n * sizeof(Shape3)) + 3 * round_up(n * sizeof(void*)) + round_up(n * sizeof(StrideA)) +
         round_up(n * sizeof(StrideB)) + round_up(n * sizeof(StrideD));
}
GroupArgs carve(char* p, int64_t e) {
  const size_t n = static_cast<size_t>(e);
  GroupArgs g;
  g.shapes = reinterpret_cast<Shape3*>(p), p += round_up(n * sizeof(Shape3));
  g.a = reinterpret_cast<const Element**>(p), p += round_up(n * sizeof(void*));
  g.b = reinterpret_cast<const Element**>(p), p += round_up(n * sizeof(void*));
  g.d = reinterpret_cast<Element**>(p), p += round_up(n * sizeof(void*));
  g.sa = reinterpret_cast<StrideA*>(p), p += round_up(n * sizeof(StrideA));
  g.sb = reinterpret_cast<StrideB*>(p), p += round_up(n * sizeof(StrideB));
  g.sd = reinterpret_cast<StrideD*>(p);
  return g;
}

template <class Gemm>
typename Gemm::Arguments gemm_arguments(const GroupArgs& g, int64_t groups, int device, int sms) {
  cutlass::KernelHardwareInfo hw;
  hw.device_id = device;
  hw.sm_count = sms;
  typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGrouped,
                                {static_cast<int>(groups), g.shapes, nullptr},  // sizes on the device only
                                {g.a, g.sa, g.b, g.sb},
                                {{}, nullptr, nullptr, g.d, g.sd},
                                hw};
  args.epilogue.thread.alpha = 1.0f;
  args.epilogue.thread.beta = 0.0f;
  return args;
}

size_t cutlass_workspace_bytes(int64_t groups, int device, int sms) {
  GroupArgs none{};
  using C = Cooperative::Gemm;
  using P = Pingpong::Gemm;
  return std::max(C::get_workspace_size(gemm_arguments<C>(none, groups, device, sms)),
                  P::get_workspace_size(gemm_arguments<P>(none, groups, device, sms)));
}

// Per expert e with m = offsets[e+1] - offsets[e] rows starting at r = offsets[e]:
//   gate_up: (m, 2I, H), A = a + r·H,   B = w_gate_up[e], D = gate_up + r·2I
//   down:    (m, H, I),  A = act + r·I, B = w_down[e],    D = a + r·H
__global__ void prepare_kernel(GroupArgs g1, GroupArgs g2, const int32_t* offsets, int experts, int hidden, int inter,
                               const Element* a, const Element* w_gate_up, const Element* w_down, Element* gate_up,
                               const Element* act) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= experts) return;
  const int r = offsets[e], m = offsets[e + 1] - r;
  const int64_t h = hidden, i2 = 2 * static_cast<int64_t>(inter), i1 = inter;
  g1.shapes[e] = make_shape(m, static_cast<int>(i2), hidden);
  g1.a[e] = a + r * h;
  g1.b[e] = w_gate_up + e * i2 * h;
  g1.d[e] = gate_up + r * i2;
  g1.sa[e] = cutlass::make_cute_packed_stride(StrideA{}, make_shape(m, hidden, 1));
  g1.sb[e] = cutlass::make_cute_packed_stride(StrideB{}, make_shape(static_cast<int>(i2), hidden, 1));
  g1.sd[e] = cutlass::make_cute_packed_stride(StrideD{}, make_shape(m, static_cast<int>(i2), 1));
  g2.shapes[e] = make_shape(m, hidden, inter);
  g2.a[e] = act + r * i1;
  g2.b[e] = w_down + e * h * i1;
  g2.d[e] = const_cast<Element*>(a) + r * h;
  g2.sa[e] = cutlass::make_cute_packed_stride(StrideA{}, make_shape(m, inter, 1));
  g2.sb[e] = cutlass::make_cute_packed_stride(StrideB{}, make_shape(hidden, inter, 1));
  g2.sd[e] = cutlass::make_cute_packed_stride(StrideD{}, make_shape(m, hidden, 1));
}

// a[slot_pos[t·k + j]] = x[t] for every local slot (16-byte copies, dim % 8 == 0): a warp per token
// reads its row once, kScatterUnroll chunks a lane in flight, and stores them to each of the
// token's rows. Walking the rows in expert order instead read each token's row k times, mostly
// from HBM (L2 did not keep x): 8.7 ms for 8K tokens x top-8 of Qwen3-30B-A3B on an H100, 7.3 with
// a warp a row (bench/NOTES.md).
constexpr int kScatterUnroll = 8, kScatterWarps = 8;
__global__ void __launch_bounds__(32 * kScatterWarps) scatter_rows_kernel(const uint4* x, const int32_t* slot_pos,
                                                                          int64_t tokens, int k,
                                                                          int64_t vecs_per_row, uint4* a) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t{gridDim.x} * kScatterWarps;
  for (int64_t t = blockIdx.x * int64_t{kScatterWarps} + (threadIdx.x >> 5); t < tokens; t += warps) {
    const int32_t my_pos = lane < k ? slot_pos[t * k + lane] : -1;  // lane j: choice j's row
    const uint4* src = x + t * vecs_per_row;
    for (int64_t v0 = lane; v0 < vecs_per_row; v0 += 32 * kScatterUnroll) {
      uint4 chunk[kScatterUnroll];
#pragma unroll
      for (int u = 0; u < kScatterUnroll; ++u)
        if (v0 + 32 * u < vecs_per_row) chunk[u] = src[v0 + 32 * u];
      for (int j = 0; j < k; ++j) {
        const int32_t pos = __shfl_sync(0xffffffffu, my_pos, j);
        if (pos < 0) continue;
        uint4* dst = a + static_cast<int64_t>(pos) * vecs_per_row;
#pragma unroll
        for (int u = 0; u < kScatterUnroll; ++u)
          if (v0 + 32 * u < vecs_per_row) dst[v0 + 32 * u] = chunk[u];
      }
    }
  }
}

template <class Gemm>
void run_gemm(const MoeSm90Args& p, int which, cudaStream_t s) {
  int sms = 0;
  const int device = current_device(&sms);
  const size_t args_bytes = group_args_bytes(p.local_experts);
  char* base = static_cast<char*>(p.workspace);
  const GroupArgs g = carve(base + (which == 0 ? 0 : args_bytes), p.local_experts);
  const typename Gemm::Arguments args = gemm_arguments<Gemm>(g, p.local_experts, device, sms);
  const size_t need = Gemm::get_workspace_size(args);
  LOOM_CHECK(2 * args_bytes + need <= p.workspace_bytes, "moe_sm90: workspace of ", p.workspace_bytes,
             " bytes, need ", 2 * args_bytes + need);
  Gemm gemm;
  cutlass::Status st = gemm.can_implement(args);
  LOOM_CHECK(st == cutlass::Status::kSuccess, "moe_sm90: CUTLASS cannot run this grouped GEMM: ",
             cutlassGetStatusString(st));
  st = gemm.initialize(args, base + 2 * args_bytes, s);
  LOOM_CHECK(st == cutlass::Status::kSuccess, "moe_sm90: CUTLASS initialize: ", cutlassGetStatusString(st));
  st = gemm.run(s);
  LOOM_CHECK(st == cutlass::Status::kSuccess, "moe_sm90: CUTLASS run: ", cutlassGetStatusString(st));
  CUDA_CHECK_LAUNCH(which == 0 ? "moe_sm90_gate_up" : "moe_sm90_down");
}

// LOOM_MOE_PINGPONG (read at every call, as tests switch it): down (default), none, or both GEMMs
// on the ping-pong kernel. On an H100's 8K prefill the down GEMM (K = 768) took 16.9 ms ping-pong
// against 18.3 cooperative; gate/up (K = 2048) 32.9 against 30.6 (bench/NOTES.md).
bool pingpong_for(int which) {
  const char* v = std::getenv("LOOM_MOE_PINGPONG");
  const std::string m = v ? v : "down";
  LOOM_CHECK(m == "none" || m == "down" || m == "both", "LOOM_MOE_PINGPONG=", m, ": expected none, down or both");
  return m == "both" || (m == "down" && which == 1);
}

void run_gemm(const MoeSm90Args& p, int which, cudaStream_t s) {
  if (pingpong_for(which)) run_gemm<Pingpong::Gemm>(p, which, s);
  else run_gemm<Cooperative::Gemm>(p, which, s);
}
#endif  // LOOM_WITH_CUTLASS

}  // namespace

bool moe_sm90_available(int device) {
#if defined(LOOM_WITH_CUTLASS)
  return device_cc(device, nullptr) == 90;
#else
  (void)device;
  return false;
#endif
}

bool moe_sm90_applies(int64_t hidden, int64_t inter, const void* x, const void* w_gate_up, const void* w_down) {
  return hidden > 0 && inter > 0 && hidden % 8 == 0 && inter % 8 == 0 && hidden < (1 << 30) && inter < (1 << 29) &&
         aligned16(x) && aligned16(w_gate_up) && aligned16(w_down);
}

size_t moe_sm90_workspace_bytes(int64_t local_experts, int device) {
#if defined(LOOM_WITH_CUTLASS)
  int sms = 0;
  device_cc(device, &sms);
  return 2 * group_args_bytes(local_experts) + round_up(cutlass_workspace_bytes(local_experts, device, sms));
#else
  (void)local_experts;
  (void)device;
  return 0;
#endif
}

void moe_sm90_prepare(const MoeSm90Args& p, cudaStream_t s) {
#if defined(LOOM_WITH_CUTLASS)
  LOOM_CHECK(p.local_experts >= 1 && p.hidden % 8 == 0 && p.inter % 8 == 0, "moe_sm90_prepare: ", p.local_experts,
             " experts, hidden ", p.hidden, ", inter ", p.inter);
  if (p.slots == 0) return;
  const size_t args_bytes = group_args_bytes(p.local_experts);
  char* base = static_cast<char*>(p.workspace);
  const GroupArgs g1 = carve(base, p.local_experts), g2 = carve(base + args_bytes, p.local_experts);
  const int experts = static_cast<int>(p.local_experts);
  prepare_kernel<<<(experts + 127) / 128, 128, 0, s>>>(
      g1, g2, p.offsets, experts, static_cast<int>(p.hidden), static_cast<int>(p.inter),
      static_cast<const Element*>(p.a), static_cast<const Element*>(p.w_gate_up),
      static_cast<const Element*>(p.w_down), static_cast<Element*>(p.gate_up), static_cast<const Element*>(p.act));
  CUDA_CHECK_LAUNCH("moe_sm90_prepare");
  LOOM_CHECK(p.top_k >= 1 && p.top_k <= 32 && p.slots % p.top_k == 0, "moe_sm90_prepare: top-", p.top_k, " of ",
             p.slots, " slots (1..32 choices a token)");
  const int64_t vecs = p.hidden / 8, tokens = p.slots / p.top_k;
  int sms = 0;
  current_device(&sms);
  // Enough warps to fill every SM several times over; each walks its tokens a grid apart.
  const int64_t blocks = std::min<int64_t>((tokens + kScatterWarps - 1) / kScatterWarps, int64_t{8} * sms);
  scatter_rows_kernel<<<static_cast<unsigned>(blocks), 32 * kScatterWarps, 0, s>>>(
      static_cast<const uint4*>(p.x), p.slot_pos, tokens, static_cast<int>(p.top_k), vecs, static_cast<uint4*>(p.a));
  CUDA_CHECK_LAUNCH("moe_sm90_gather");
#else
  (void)p;
  (void)s;
  LOOM_CHECK(false, "moe_sm90: this build has no CUTLASS (configure with the flashinfer-python headers)");
#endif
}

void moe_sm90_gate_up(const MoeSm90Args& p, cudaStream_t s) {
#if defined(LOOM_WITH_CUTLASS)
  if (p.slots > 0) run_gemm(p, 0, s);
#else
  (void)p;
  (void)s;
  LOOM_CHECK(false, "moe_sm90: this build has no CUTLASS");
#endif
}

void moe_sm90_down(const MoeSm90Args& p, cudaStream_t s) {
#if defined(LOOM_WITH_CUTLASS)
  if (p.slots > 0) run_gemm(p, 1, s);
#else
  (void)p;
  (void)s;
  LOOM_CHECK(false, "moe_sm90: this build has no CUTLASS");
#endif
}

void moe_combine_weighted(const void* y, const int32_t* slot_pos, const float* weights, int64_t t, int64_t k,
                          int64_t h, void* out, cudaStream_t s) {
  if (t == 0) return;
  const bool vec = h % 8 == 0 && aligned16(y) && aligned16(out);
  const int threads = h >= 2048 ? 256 : 64;
  if (vec) {
    combine_weighted_kernel<true><<<static_cast<unsigned>(t), threads, 0, s>>>(
        static_cast<const bf16*>(y), slot_pos, weights, static_cast<int>(k), h, static_cast<bf16*>(out));
  } else {
    combine_weighted_kernel<false><<<static_cast<unsigned>(t), threads, 0, s>>>(
        static_cast<const bf16*>(y), slot_pos, weights, static_cast<int>(k), h, static_cast<bf16*>(out));
  }
  CUDA_CHECK_LAUNCH("moe_combine_weighted");
}

}  // namespace loom::kernels::cuda
