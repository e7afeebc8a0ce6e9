// The experts of a decode step's few tokens (at most kDecodeMaxRows) without the sort: a gate/up +
// SiLU kernel a warp per intermediate row pair and routed slot, then down + the weighted combine a
// warp per hidden rows and slot, both streaming the picked experts' weights (weight_stream.cuh).
#include <algorithm>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/pdl.cuh"
#include "loom/kernels/cuda/route_topk.cuh"
#include "loom/kernels/cuda/weight_stream.cuh"
#include "loom/tensor/env.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

using namespace weight_stream;
constexpr int kMaxTopK = 32;

// Routing taken inside the gate/up kernel (moe_decode_routed): the router's logits [tokens, experts]
// bf16, and where the picks go for the down kernel.
struct GateUpRoute {
  const bf16* logits;  // null: the routing is an input (ids)
  int experts;
  bool renormalize;
  float* weights;  // [tokens, top_k]
  int32_t* ids;    // [tokens, top_k]
};

// MoE decode, gate/up: for routed slot blockIdx.y (token slot / top_k) and intermediate index i
// (one per warp), act[slot, i] = silu(gate_i · x) * (up_i · x). Gate and up are rounded to bf16
// first, as the grouped path stores them. Slots of other ranks' experts are skipped (never read).
// With route.logits, every block first takes its token's top-k itself (one warp, route_topk.cuh's
// registers path, so the same picks and weights as router_topk_kernel's last block), and the
// blocks x = 0 of the token's first slot write the picks for the down kernel: the router is then a
// plain GEMV, without the completion counter, fence and second L2 round trip of its last block.
__global__ void __launch_bounds__(kThreads) moe_decode_gate_up_kernel(const bf16* x, const int32_t* ids,
                                                                      int64_t expert_begin, int64_t experts,
                                                                      int top_k, const bf16* w, int inter,
                                                                      int hidden, bf16* act, GateUpRoute route) {
  wait_then_allow_dependents();  // the experts (or the logits) come from the router just before
  const int64_t slot = blockIdx.y;
  int64_t e;
  if (route.logits) {
    __shared__ float picked_w[kMaxTopK];
    __shared__ int32_t picked[kMaxTopK];
    const int64_t tok = slot / top_k;
    if (threadIdx.x < 32)
      route_token_in_registers(route.logits + tok * route.experts, 0, route.experts, top_k, route.renormalize,
                               picked_w, picked, 1.0f);
    __syncthreads();
    if (blockIdx.x == 0 && slot % top_k == 0 && threadIdx.x < top_k) {
      route.weights[tok * top_k + threadIdx.x] = picked_w[threadIdx.x];
      route.ids[tok * top_k + threadIdx.x] = picked[threadIdx.x];
    }
    e = picked[slot % top_k] - expert_begin;
  } else {
    e = ids[slot] - expert_begin;
  }
  const int i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (e < 0 || e >= experts || i >= inter) return;
  const int k8 = hidden / 8;
  const uint4* base = reinterpret_cast<const uint4*>(w) + e * 2 * inter * int64_t(k8);
  const uint4* rows[2] = {base + int64_t(i) * k8, base + int64_t(inter + i) * k8};
  float acc[2][1] = {};
  // Two rows of 2 chunks in flight a lane: 14.2 µs for 8 experts of 1536 x 2048 against 15.9 with 4
  lane_dots<2, 1, 2>(rows, reinterpret_cast<const uint4*>(x) + (slot / top_k) * k8, 0, 1, k8, acc,
                     weight_policy());
  const float g = to_f(to_bf(warp_sum(acc[0][0]))), u = to_f(to_bf(warp_sum(acc[1][0])));
  if ((threadIdx.x & 31) == 0) act[slot * inter + i] = to_bf(g / (1.0f + __expf(-g)) * u);
}

// MoE decode, down + weighted combine: out[t, h] = Σ_j weight[t, j] · (down[e_j][h, :] · act[t·k + j]),
// over token t's local experts (0 when none). A warp per (H consecutive h, slot j), all of the rows'
// chunks in flight at once, `groups` · H h a block of groups · top_k warps; the slots' products are
// added in slot order, so H changes no result. (A warp per h walking all the slots took 12.5 µs for
// Qwen3's 8 x 2048 x 768, a warp per (h, slot) 8.6.) Two h a warp: bs-1 / bs-8 decode 3.17 / 10.80
// ms with one, 3.12 / 10.48 with two, 3.36 / 12.47 with four (bench/NOTES.md). U: chunks of a row in
// flight a lane (lane_dots).
constexpr int kDownRowsPerWarp = 2;
template <int H, int U = kUnroll>
__global__ void __launch_bounds__(1024) moe_decode_down_kernel(const bf16* act, const int32_t* ids,
                                                               const float* weights, int64_t expert_begin,
                                                               int64_t experts, int top_k, const bf16* w, int hidden,
                                                               int inter, bf16* out, bool prefetch) {
  __shared__ float part[32][H];  // [groups][top_k][H], groups · top_k <= 32
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int j = warp % top_k, groups = blockDim.x / 32 / top_k;
  const int64_t t = blockIdx.y;
  const int h0 = (blockIdx.x * groups + warp / top_k) * H;
  const int k8 = inter / 8;
  if (prefetch && lane == 0 && h0 < hidden) {
    // An exception to pdl.cuh's rule, safe here only: the routing is an input of the gate/up kernel
    // launched just before, which let this one start only once its own wait had returned, i.e. once
    // all the stream's work before it (the routing's writer among it) was complete. So this warp's
    // rows can start towards L2 before the wait.
    const int64_t e = __ldcg(ids + t * top_k + j) - expert_begin;
    if (e >= 0 && e < experts)
      prefetch_l2(reinterpret_cast<const uint4*>(w) + (e * hidden + h0) * int64_t(k8),
                  static_cast<unsigned>(min(H, hidden - h0) * k8) * 16u);
  }
  wait_then_allow_dependents();
  const int64_t e = ids[t * top_k + j] - expert_begin;
  float acc[H][1] = {};
  if (h0 < hidden && e >= 0 && e < experts) {
    const uint4* rows[H];
#pragma unroll
    for (int r = 0; r < H; ++r)  // rows past `hidden` re-read the last one; their sums are dropped
      rows[r] = reinterpret_cast<const uint4*>(w) + (e * hidden + min(h0 + r, hidden - 1)) * int64_t(k8);
    lane_dots<H, 1, U>(rows, reinterpret_cast<const uint4*>(act) + (t * top_k + j) * k8, 0, 1, k8, acc,
                    weight_policy());
#pragma unroll
    for (int r = 0; r < H; ++r) acc[r][0] = warp_sum(acc[r][0]) * weights[t * top_k + j];
  }
  if (lane == 0)
#pragma unroll
    for (int r = 0; r < H; ++r) part[warp][r] = acc[r][0];
  __syncthreads();
  if (j == 0 && lane < H && h0 + lane < hidden) {
    float v = 0;
    for (int q = 0; q < top_k; ++q) v += part[warp + q][lane];
    out[t * hidden + h0 + lane] = to_bf(v);
  }
}

// MoE decode switches, measured on an H200 (bench/NOTES.md): LOOM_MOE_DOWN_PREFETCH
// (moe_decode_down_kernel) stays off unless set to 1 (bs 1 3.087 -> 3.201 ms: slower).
// LOOM_MOE_DOWN_ROWS=4 (not yet measured): the down kernel at four rows a warp with two chunks of
// each in flight a lane (62 registers, no spill): Qwen3-30B-A3B's bs-1 down launch is then 512
// blocks at 4 an SM, one wave, where two rows a warp make 1,024 blocks at 60 registers, two waves.
// The four-row kernel measured slower before kept four chunks of each row in flight (U = 4): at the
// 64 registers its 1,024-thread bound allows it spills 200 bytes a thread.
struct MoeDecodeSwitches {
  bool down_prefetch = false, down_four_rows = false;
};
const MoeDecodeSwitches& moe_decode_switches() {
  static const MoeDecodeSwitches switches{env_is("LOOM_MOE_DOWN_PREFETCH", "1"), env_is("LOOM_MOE_DOWN_ROWS", "4")};
  return switches;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool moe_decode_applies(int64_t tokens, int64_t top_k, int64_t hidden, int64_t inter, const void* x,
                        const void* w_gate_up, const void* w_down) {
  return tokens >= 1 && tokens <= kDecodeMaxRows && top_k >= 1 && top_k <= kMaxTopK && hidden % 8 == 0 &&
         inter % 8 == 0 && aligned16(x) && aligned16(w_gate_up) && aligned16(w_down);
}

namespace {

// moe_decode and moe_decode_routed: the gate/up kernel, then down + combine.
void launch_moe_decode(const void* x, const int32_t* ids, const float* weights, int64_t tokens, int64_t top_k,
                       int64_t expert_begin, int64_t local_experts, const void* w_gate_up, const void* w_down,
                       int64_t hidden, int64_t inter, void* act, void* out, const GateUpRoute& route,
                       cudaStream_t s) {
  LOOM_CHECK(moe_decode_applies(tokens, top_k, hidden, inter, x, w_gate_up, w_down), "moe_decode: ", tokens,
             " tokens, top-", top_k, ", hidden ", hidden, ", intermediate ", inter);
  const int hi = static_cast<int>(hidden), ii = static_cast<int>(inter), k = static_cast<int>(top_k);
  const dim3 up_grid(static_cast<unsigned>((inter + kWarps - 1) / kWarps), static_cast<unsigned>(tokens * top_k));
  launch_pdl(moe_decode_gate_up_kernel, up_grid, kThreads, 0, s, static_cast<const bf16*>(x), ids, expert_begin,
             local_experts, k, static_cast<const bf16*>(w_gate_up), ii, hi, static_cast<bf16*>(act), route);
  const int groups = std::max(1, kWarps / k);  // warps of k slots a block
  const bool four = moe_decode_switches().down_four_rows;
  const int64_t h_per_block = int64_t{groups} * (four ? 4 : kDownRowsPerWarp);
  const dim3 down_grid(static_cast<unsigned>((hidden + h_per_block - 1) / h_per_block), static_cast<unsigned>(tokens));
  // The down kernel's routing prefetch reads the ids before its wait: only when they come from a
  // kernel before the gate/up one (moe_decode_down_kernel), not from the gate/up kernel itself.
  const bool prefetch = moe_decode_switches().down_prefetch && !route.logits;
  launch_pdl(four ? moe_decode_down_kernel<4, 2> : moe_decode_down_kernel<kDownRowsPerWarp>, down_grid,
             32 * groups * k, 0, s, static_cast<const bf16*>(act), ids, weights, expert_begin, local_experts, k,
             static_cast<const bf16*>(w_down), hi, ii, static_cast<bf16*>(out), prefetch);
}

}  // namespace

void moe_decode(const void* x, const int32_t* ids, const float* weights, int64_t tokens, int64_t top_k,
                int64_t expert_begin, int64_t local_experts, const void* w_gate_up, const void* w_down,
                int64_t hidden, int64_t inter, void* act, void* out, cudaStream_t s) {
  launch_moe_decode(x, ids, weights, tokens, top_k, expert_begin, local_experts, w_gate_up, w_down, hidden, inter,
                    act, out, GateUpRoute{nullptr, 0, false, nullptr, nullptr}, s);
}

bool moe_route_in_experts() {
  // LOOM_MOE_ROUTE=experts: the top-k in the gate/up kernel (moe_decode_routed) instead of the
  // router's last block (router_topk). Off until measured on an H200 (bench/NOTES.md).
  static const bool on = env_is("LOOM_MOE_ROUTE", "experts");
  return on;
}

bool moe_decode_routed_applies(int64_t tokens, int64_t experts, int64_t top_k, int64_t hidden, int64_t inter,
                               const void* x, const void* w_gate_up, const void* w_down) {
  return moe_route_in_experts() && experts >= top_k && experts <= 32 * kRouteRegs &&
         moe_decode_applies(tokens, top_k, hidden, inter, x, w_gate_up, w_down);
}

void moe_decode_routed(const void* x, const void* logits, int64_t experts, bool renormalize, float* weights,
                       int32_t* ids, int64_t tokens, int64_t top_k, int64_t expert_begin, int64_t local_experts,
                       const void* w_gate_up, const void* w_down, int64_t hidden, int64_t inter, void* act, void* out,
                       cudaStream_t s) {
  LOOM_CHECK(experts >= top_k && experts <= 32 * kRouteRegs, "moe_decode_routed: top-", top_k, " of ", experts,
             " experts (at most ", 32 * kRouteRegs, ")");
  const GateUpRoute route{static_cast<const bf16*>(logits), static_cast<int>(experts), renormalize, weights, ids};
  launch_moe_decode(x, ids, weights, tokens, top_k, expert_begin, local_experts, w_gate_up, w_down, hidden, inter,
                    act, out, route, s);
}

}  // namespace loom::kernels::cuda
