// The experts of a decode step's few tokens (at most kDecodeMaxRows) without the sort: a gate/up +
// SiLU kernel a warp per intermediate row pair and routed slot, then down + the weighted combine a
// warp per hidden rows and slot, both streaming the picked experts' weights (weight_stream.cuh).
// Two launches with a kernel boundary between them, on purpose: the down kernel waiting in-kernel on
// counts of finished gate/up blocks instead (started early, its first weight chunks loaded while
// the gate/up blocks finish), and both halves in one launch of ticket-taking blocks, were each
// slower (bs-1 decode +0.05-0.08 ms, bs 8 +0.5 ms on an H100: bench/NOTES.md) and were removed.
#include <algorithm>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/pdl.cuh"
#include "loom/kernels/cuda/weight_stream.cuh"
#include "loom/tensor/env.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

using namespace weight_stream;
constexpr int kMaxTopK = 32;

// MoE decode, gate/up: for routed slot blockIdx.y (token slot / top_k) and intermediate index i
// (one per warp), act[slot, i] = silu(gate_i · x) * (up_i · x). Gate and up are rounded to bf16
// first, as the grouped path stores them. Slots of other ranks' experts are skipped (never read).
// (The top-k taken here from the router's logits instead, by every block, measured slower than the
// router's own last block: bench/NOTES.md.) MinBlocks: blocks an SM the registers must allow (0:
// no bound, 42 registers, 5 blocks an SM: 660 on 132 SMs; 6: 40 registers, no spill, so one
// token's 8 x 96 blocks of Qwen3-30B-A3B are one wave of 792).
template <int MinBlocks>
__global__ void __launch_bounds__(kThreads, MinBlocks) moe_decode_gate_up_kernel(
    const bf16* x, const int32_t* ids, int64_t expert_begin, int64_t experts, int top_k, const bf16* w, int inter,
    int hidden, bf16* act) {
  wait_then_allow_dependents();  // the experts come from the router just before
  const int64_t slot = blockIdx.y;
  const int64_t e = ids[slot] - expert_begin;
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
// over token t's local experts (0 when none). A warp per (H consecutive h, slot j), U chunks of each
// row in flight a lane (lane_dots), `groups` · H h a block of groups · top_k warps; the slots'
// products are added in slot order, so neither H nor U changes a result. (A warp per h walking all
// the slots took 12.5 µs for Qwen3's 8 x 2048 x 768, a warp per (h, slot) 8.6.)
template <int H, int U>
__global__ void __launch_bounds__(1024) moe_decode_down_kernel(const bf16* act, const int32_t* ids,
                                                               const float* weights, int64_t expert_begin,
                                                               int64_t experts, int top_k, const bf16* w, int hidden,
                                                               int inter, bf16* out) {
  __shared__ float part[32][H];  // [groups][top_k][H], groups · top_k <= 32
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int j = warp % top_k, groups = blockDim.x / 32 / top_k;
  const int64_t t = blockIdx.y;
  const int h0 = (blockIdx.x * groups + warp / top_k) * H;
  const int k8 = inter / 8;
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

// The down kernel's shape (H200 and H100, Qwen3-30B-A3B, bench/NOTES.md). Two h a warp with 4
// chunks of each in flight (58 registers, 4 blocks an SM): bs-1 / bs-8 decode 3.12 / 10.48 ms
// against 3.17 / 10.80 at one h a warp; four h with 4 chunks spill at the 64-register bound (3.36 /
// 12.47). For one token, four h a warp with 2 chunks each (60 registers, no spill) halve the launch
// to 512 blocks, one wave where two h make two: bs 1 2.913-2.933 against 2.960 ms on an H200
// (3.375 against 3.429 on an H100), while at bs 8 it was slower (13.407 against 13.29 on an H100).
// LOOM_MOE_DOWN_ROWS=2 keeps two h at one token too.
struct DownShape {
  int rows_per_warp;
  void (*kernel)(const bf16*, const int32_t*, const float*, int64_t, int64_t, int, const bf16*, int, int, bf16*);
};
DownShape down_shape(int64_t tokens) {
  static const bool two_always = env_is("LOOM_MOE_DOWN_ROWS", "2");
  if (tokens == 1 && !two_always) return {4, moe_decode_down_kernel<4, 2>};
  return {2, moe_decode_down_kernel<2, kUnroll>};
}

// The gate/up kernel for a launch of `blocks`: held to 40 registers when that makes the launch
// one wave (6 blocks an SM where the unbounded kernel's 42 allow 5): one token of Qwen3-30B-A3B,
// 768 blocks, bs-1 decode 3.385 / 3.370 -> 3.267 / 3.254 ms on an H100. Launches of several waves
// keep the unbounded kernel (bs 8 was 0.04-0.07 ms slower held). LOOM_MOE_GATE_UP_WAVE=0: never held.
auto gate_up_kernel(int64_t blocks) {
  static const bool off = env_is("LOOM_MOE_GATE_UP_WAVE", "0");
  const int64_t sms = sm_count();
  return !off && blocks > 5 * sms && blocks <= 6 * sms ? moe_decode_gate_up_kernel<6>
                                                                       : moe_decode_gate_up_kernel<0>;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool moe_decode_applies(int64_t tokens, int64_t top_k, int64_t hidden, int64_t inter, const void* x,
                        const void* w_gate_up, const void* w_down) {
  return tokens >= 1 && tokens <= kDecodeMaxRows && top_k >= 1 && top_k <= kMaxTopK && hidden % 8 == 0 &&
         inter % 8 == 0 && aligned16(x) && aligned16(w_gate_up) && aligned16(w_down);
}

void moe_decode(const void* x, const int32_t* ids, const float* weights, int64_t tokens, int64_t top_k,
                int64_t expert_begin, int64_t local_experts, const void* w_gate_up, const void* w_down,
                int64_t hidden, int64_t inter, void* act, void* out, cudaStream_t s) {
  LOOM_CHECK(moe_decode_applies(tokens, top_k, hidden, inter, x, w_gate_up, w_down), "moe_decode: ", tokens,
             " tokens, top-", top_k, ", hidden ", hidden, ", intermediate ", inter);
  const int hi = static_cast<int>(hidden), ii = static_cast<int>(inter), k = static_cast<int>(top_k);
  const dim3 up_grid(static_cast<unsigned>((inter + kWarps - 1) / kWarps), static_cast<unsigned>(tokens * top_k));
  auto* gate_up = gate_up_kernel(int64_t{up_grid.x} * up_grid.y);
  for (int i = 0; i < launches_of("gate_up"); ++i)
    launch_pdl(gate_up, up_grid, kThreads, 0, s, static_cast<const bf16*>(x), ids, expert_begin, local_experts, k,
               static_cast<const bf16*>(w_gate_up), ii, hi, static_cast<bf16*>(act));
  const int groups = std::max(1, kWarps / k);  // warps of k slots a block
  const DownShape down = down_shape(tokens);
  const int64_t h_per_block = int64_t{groups} * down.rows_per_warp;
  const dim3 down_grid(static_cast<unsigned>((hidden + h_per_block - 1) / h_per_block), static_cast<unsigned>(tokens));
  for (int i = 0; i < launches_of("down"); ++i)
    launch_pdl(down.kernel, down_grid, 32 * groups * k, 0, s, static_cast<const bf16*>(act), ids, weights,
               expert_begin, local_experts, k, static_cast<const bf16*>(w_down), hi, ii, static_cast<bf16*>(out));
}

}  // namespace loom::kernels::cuda
