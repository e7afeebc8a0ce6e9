// The experts of a decode step's few tokens (at most kDecodeMaxRows) without the sort: a gate/up +
// SiLU kernel a warp per intermediate row pair and routed slot, then down + the weighted combine a
// warp per hidden rows and slot, both streaming the picked experts' weights (weight_stream.cuh).
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

// act[slot, i] = silu(gate_i · x) * (up_i · x) for one warp: rows i and inter + i of expert e
// (local index), x being the slot's token. Gate and up are rounded to bf16 first, as the grouped
// path stores them. Two rows of 2 chunks in flight a lane: 14.2 µs for 8 experts of 1536 x 2048
// against 15.9 with 4 (in the fused kernel 4 spill at its 64 registers).
__device__ __forceinline__ void gate_up_row(const bf16* x, int64_t e, int64_t slot, int top_k, const bf16* w, int inter,
                                            int hidden, int i, bf16* act) {
  const int k8 = hidden / 8;
  const uint4* base = reinterpret_cast<const uint4*>(w) + e * 2 * inter * int64_t(k8);
  const uint4* rows[2] = {base + int64_t(i) * k8, base + int64_t(inter + i) * k8};
  float acc[2][1] = {};
  lane_dots<2, 1, 2>(rows, reinterpret_cast<const uint4*>(x) + (slot / top_k) * k8, 0, 1, k8, acc, weight_policy());
  const float g = to_f(to_bf(warp_sum(acc[0][0]))), u = to_f(to_bf(warp_sum(acc[1][0])));
  if ((threadIdx.x & 31) == 0) act[slot * inter + i] = to_bf(g / (1.0f + __expf(-g)) * u);
}

// MoE decode, gate/up: routed slot blockIdx.y (token slot / top_k), intermediate index i a warp.
// Slots of other ranks' experts are skipped (never read). (The top-k taken here from the router's
// logits instead, by every block, measured slower than the router's own last block: bench/NOTES.md.)
__global__ void __launch_bounds__(kThreads) moe_decode_gate_up_kernel(const bf16* x, const int32_t* ids,
                                                                      int64_t expert_begin, int64_t experts,
                                                                      int top_k, const bf16* w, int inter,
                                                                      int hidden, bf16* act, unsigned* token_done) {
  wait_then_allow_dependents();  // the experts come from the router just before
  const int64_t slot = blockIdx.y;
  const int64_t e = ids[slot] - expert_begin;
  const int i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (e >= 0 && e < experts && i < inter) {
    gate_up_row(x, e, slot, top_k, w, inter, hidden, i, act);
    if (token_done && (threadIdx.x & 31) == 0) __threadfence();  // act visible before the block counts
  }
  if (token_done) {  // LOOM_MOE_DOWN_EARLY: the down kernel waits on this count, not on the launch
    __syncthreads();
    if (threadIdx.x == 0) atomicAdd(&token_done[slot / top_k], 1u);
  }
}

// Σ_i down[h, i] · act[i] for H rows of one expert, times `scale`, into acc (every lane). The first
// U chunks of each row are loaded before before_act() runs (the fused kernel waits for act there;
// every thread of the block calls it, live or not), the rest after; the chunks are summed in
// lane_dots' order either way, so the split changes no result.
template <int H, int U, bool FromL2, typename BeforeAct>
__device__ __forceinline__ void down_dots(const uint4* const (&rows)[H], bool live, const uint4* act_row, int k8,
                                          float (&acc)[H][1], BeforeAct before_act) {
  const uint64_t policy = weight_policy();
  const int lane = threadIdx.x & 31;
  uint4 w[H][U];
  if (live) load_chunks<H, U>(rows, lane, k8, policy, w);
  before_act();
  if (!live) return;
  dot_chunks<H, 1, U, FromL2>(w, act_row, 0, 1, lane, k8, acc);
  lane_dots<H, 1, U, FromL2>(rows, act_row, 0, 1, k8, acc, policy, lane + 32 * U);
}

// The down kernels' combine: each warp's H row sums (slot j of its group) through part[warp], then
// the group's slot-0 warp adds the top_k slots in slot order into out_row[h0..] (h0 < 0: no rows).
template <int H>
__device__ __forceinline__ void combine_slots(const float (&acc)[H][1], float (*part)[H], int j, int top_k, int h0,
                                              int hidden, bf16* out_row) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0)
#pragma unroll
    for (int r = 0; r < H; ++r) part[warp][r] = acc[r][0];
  __syncthreads();
  if (j == 0 && lane < H && h0 >= 0 && h0 + lane < hidden) {
    float v = 0;
    for (int q = 0; q < top_k; ++q) v += part[warp + q][lane];
    out_row[h0 + lane] = to_bf(v);
  }
}

// Down + combine for token t, slot j and hidden rows h0.. h0 + H - 1 of one warp (`live`: a warp
// with rows to do), the slots' products summed in slot order through part[warp][H] by the warp of
// slot 0 (a block holds groups of top_k consecutive warps). Every thread of the block calls it.
template <int H, int U, bool FromL2, typename BeforeAct>
__device__ __forceinline__ void down_combine(const bf16* act, const int32_t* ids, const float* weights,
                                             int64_t expert_begin, int64_t experts, int top_k, const bf16* w,
                                             int hidden, int inter, bf16* out, int64_t t, int j, int h0, bool live,
                                             float (*part)[H], BeforeAct before_act) {
  const int k8 = inter / 8;
  // FromL2: ids too, read before this launch's wait on the router's completion (down_early_kernel)
  const int64_t e = live ? (FromL2 ? __ldcg(ids + t * top_k + j) : ids[t * top_k + j]) - expert_begin : -1;
  live = live && e >= 0 && e < experts;
  const uint4* rows[H];
#pragma unroll
  for (int r = 0; r < H; ++r)  // rows past `hidden` re-read the last one; their sums are dropped
    rows[r] = reinterpret_cast<const uint4*>(w) + (max(e, int64_t{0}) * hidden + min(h0 + r, hidden - 1)) * int64_t(k8);
  float acc[H][1] = {};
  down_dots<H, U, FromL2>(rows, live, reinterpret_cast<const uint4*>(act) + (t * top_k + j) * k8, k8, acc, before_act);
  if (live)
#pragma unroll
    for (int r = 0; r < H; ++r) acc[r][0] = warp_sum(acc[r][0]) * weights[t * top_k + j];
  combine_slots<H>(acc, part, j, top_k, h0, hidden, out + t * hidden);
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
  const int warp = threadIdx.x >> 5;
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
  combine_slots<H>(acc, part, j, top_k, h0, hidden, out + t * hidden);
}

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// The down kernel launched to wait on the gate/up kernel's blocks instead of on its completion
// (LOOM_MOE_DOWN_EARLY=1): it never calls griddepcontrol.wait. Under PDL its blocks are scheduled
// once every gate/up block has started (the gate/up kernel lets dependents go right after its own
// wait, so the router is complete by then and the expert ids final); as gate/up blocks leave, down
// blocks take their places, load their rows' first chunks, and wait until every gate/up block of
// their token has counted itself in (token_done[t] == up_blocks_per_token), then read act from L2.
// It cannot deadlock: every gate/up block is resident or done before any down block starts, and
// none of them waits on anything. done[0] counts finished down blocks; the last resets the counts.
template <int H, int U>
__global__ void __launch_bounds__(1024) moe_decode_down_early_kernel(const bf16* act, const int32_t* ids,
                                                                     const float* weights, int64_t expert_begin,
                                                                     int64_t experts, int top_k, const bf16* w,
                                                                     int hidden, int inter, bf16* out,
                                                                     unsigned* done, unsigned up_blocks_per_token) {
  __shared__ float part[32][H];  // [groups][top_k][H], groups · top_k <= 32
  const int warp = threadIdx.x >> 5;
  const int j = warp % top_k, groups = blockDim.x / 32 / top_k;
  const int64_t t = blockIdx.y;
  const int h0 = (blockIdx.x * groups + warp / top_k) * H;
  unsigned* token_done = done + 1;
  down_combine<H, U, true>(act, ids, weights, expert_begin, experts, top_k, w, hidden, inter, out, t, j, h0,
                           h0 < hidden, part, [&] {
                             if (threadIdx.x == 0)
                               while (load_acquire(&token_done[t]) < up_blocks_per_token) __nanosleep(32);
                             __syncthreads();
                             allow_dependents();
                           });
  if (threadIdx.x == 0 && atomicAdd(&done[0], 1u) == gridDim.x * gridDim.y - 1) {
    for (unsigned i = 0; i < gridDim.y; ++i) token_done[i] = 0;  // every down block is past its wait
    done[0] = 0;
  }
}

// Both halves in one launch (LOOM_MOE_FUSED=1): the gate/up blocks' work and then the down blocks'
// are handed out as tickets, in that order, to blocks that take one after another. A down ticket
// loads its rows' first chunks, waits until every gate/up ticket of its token has counted itself
// done, then reads act from L2: the down weights stream while the last gate/up rows finish, with no
// kernel boundary (ramp, tail, launch) between them. Tickets, not block indices, so it cannot
// deadlock however few blocks are resident: a gate/up ticket waits on nothing, and a down ticket
// is handed out only after every gate/up ticket was taken by a running block.
// Counters (kFusedCounters: [0] next ticket, [1] blocks finished, [2 + t] token t's finished gate/up
// tickets) are zero between launches: the last block to finish resets them.
constexpr int kFusedCounterBase = 64;  // completion_counters() slots; the router uses 0


template <int H, int U>
__global__ void __launch_bounds__(kThreads, 4) moe_decode_fused_kernel(const bf16* x, const int32_t* ids,
                                                                      const float* weights, int64_t expert_begin,
                                                                      int64_t experts, int tokens, int top_k,
                                                                      const bf16* w_gate_up, const bf16* w_down,
                                                                      int hidden, int inter, bf16* act, bf16* out,
                                                                      unsigned* ctr) {
  __shared__ float part[kWarps][H];
  __shared__ unsigned ticket;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const unsigned up_per_slot = (inter + kWarps - 1) / kWarps, up_per_token = up_per_slot * top_k;
  const int groups = kWarps / top_k;  // warps of top_k slots a down ticket
  const unsigned down_per_token = (hidden + groups * H - 1) / (groups * H);
  const unsigned n_up = up_per_token * tokens, total = n_up + down_per_token * tokens;
  wait_then_allow_dependents();  // the experts come from the router just before
  if (threadIdx.x == 0) ticket = atomicAdd(&ctr[0], 1u);
  __syncthreads();
  for (unsigned v = ticket; v < total; v = ticket) {
    __syncthreads();  // every thread has read `ticket`
    unsigned next = 0;
    if (threadIdx.x == 0) next = atomicAdd(&ctr[0], 1u);  // in flight during this ticket
    if (v < n_up) {
      const unsigned slot = v / up_per_slot;
      const int i = static_cast<int>(v % up_per_slot) * kWarps + warp;
      const int64_t e = ids[slot] - expert_begin;
      if (e >= 0 && e < experts && i < inter) {
        gate_up_row(x, e, slot, top_k, w_gate_up, inter, hidden, i, act);
        if (lane == 0) __threadfence();  // act visible before the ticket counts itself done
      }
      __syncthreads();
      if (threadIdx.x == 0) atomicAdd(&ctr[2 + slot / top_k], 1u);
    } else {
      const unsigned d = v - n_up, t = d / down_per_token;
      const int j = warp % top_k, h0 = static_cast<int>((d % down_per_token) * groups + warp / top_k) * H;
      const unsigned* done = &ctr[2 + t];
      down_combine<H, U, true>(act, ids, weights, expert_begin, experts, top_k, w_down, hidden, inter, out, t, j,
                               warp < groups * top_k ? h0 : -1, warp < groups * top_k && h0 < hidden, part,
                               [&] {
                                 if (threadIdx.x == 0)
                                   while (load_acquire(done) < up_per_token) __nanosleep(32);
                                 __syncthreads();
                               });
    }
    if (threadIdx.x == 0) ticket = next;
    __syncthreads();
  }
  if (threadIdx.x == 0 && atomicAdd(&ctr[1], 1u) == gridDim.x - 1) {
    ctr[0] = 0;  // every block has taken its last ticket: ready for the next launch
    ctr[1] = 0;
    for (int t = 0; t < tokens; ++t) ctr[2 + t] = 0;
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
  void (*early)(const bf16*, const int32_t*, const float*, int64_t, int64_t, int, const bf16*, int, int, bf16*,
                unsigned*, unsigned);  // the same shape as moe_decode_down_early_kernel
};
DownShape down_shape(int64_t tokens) {
  static const bool two_always = env_is("LOOM_MOE_DOWN_ROWS", "2");
  if (tokens == 1 && !two_always) return {4, moe_decode_down_kernel<4, 2>, moe_decode_down_early_kernel<4, 2>};
  return {2, moe_decode_down_kernel<2, kUnroll>, moe_decode_down_early_kernel<2, kUnroll>};
}

// LOOM_MOE_FUSED=1: moe_decode_fused_kernel where it applies (top_k <= kWarps: a down ticket's
// block holds every slot of its rows). Two h a warp, two chunks of each loaded before the wait for
// act (64 registers, no spill; three chunks, all of Qwen3's 768-wide rows, spilled 48 bytes).
constexpr int kFusedRows = 2, kFusedChunks = 2;
constexpr int kEarlyCounterBase = 96;  // moe_decode_down_early_kernel's `done`

// The switches' choice: LOOM_MOE_FUSED=1 (where it applies), LOOM_MOE_DOWN_EARLY=1, else separate.
MoeDecodeKernels chosen_kernels(int64_t top_k) {
  static const bool fused = env_is("LOOM_MOE_FUSED", "1"), early = env_is("LOOM_MOE_DOWN_EARLY", "1");
  if (fused && moe_decode_fuses(top_k)) return MoeDecodeKernels::fused;
  return early ? MoeDecodeKernels::early : MoeDecodeKernels::separate;
}

int sm_count() {
  int device = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
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
  moe_decode_with(chosen_kernels(top_k), 0, x, ids, weights, tokens, top_k, expert_begin, local_experts, w_gate_up,
                  w_down, hidden, inter, act, out, s);
}

bool moe_decode_fuses(int64_t top_k) { return top_k <= kWarps; }

void moe_decode_with(MoeDecodeKernels kernels, unsigned max_blocks, const void* x, const int32_t* ids,
                     const float* weights, int64_t tokens, int64_t top_k, int64_t expert_begin, int64_t local_experts,
                     const void* w_gate_up, const void* w_down, int64_t hidden, int64_t inter, void* act, void* out,
                     cudaStream_t s) {
  LOOM_CHECK(moe_decode_applies(tokens, top_k, hidden, inter, x, w_gate_up, w_down), "moe_decode: ", tokens,
             " tokens, top-", top_k, ", hidden ", hidden, ", intermediate ", inter);
  const int hi = static_cast<int>(hidden), ii = static_cast<int>(inter), k = static_cast<int>(top_k);
  if (kernels == MoeDecodeKernels::fused) {
    LOOM_CHECK(moe_decode_fuses(top_k), "moe_decode: the fused kernel takes top-k <= ", kWarps, ", not ", top_k);
    const int64_t up = tokens * top_k * ((inter + kWarps - 1) / kWarps);
    const int64_t rows_per_ticket = int64_t{kWarps / k} * kFusedRows;
    const int64_t tickets = up + tokens * ((hidden + rows_per_ticket - 1) / rows_per_ticket);
    int64_t blocks = std::min<int64_t>(tickets, int64_t{4} * sm_count());  // 4 fit an SM
    if (max_blocks > 0) blocks = std::min<int64_t>(blocks, max_blocks);
    launch_pdl(moe_decode_fused_kernel<kFusedRows, kFusedChunks>, static_cast<unsigned>(blocks), kThreads, 0, s,
               static_cast<const bf16*>(x), ids, weights, expert_begin, local_experts, static_cast<int>(tokens), k,
               static_cast<const bf16*>(w_gate_up), static_cast<const bf16*>(w_down), hi, ii, static_cast<bf16*>(act),
               static_cast<bf16*>(out), completion_counters() + kFusedCounterBase);
    return;
  }
  const dim3 up_grid(static_cast<unsigned>((inter + kWarps - 1) / kWarps), static_cast<unsigned>(tokens * top_k));
  const int groups = std::max(1, kWarps / k);  // warps of k slots a block
  const DownShape down = down_shape(tokens);
  const int64_t h_per_block = int64_t{groups} * down.rows_per_warp;
  const dim3 down_grid(static_cast<unsigned>((hidden + h_per_block - 1) / h_per_block), static_cast<unsigned>(tokens));
  const bool early = kernels == MoeDecodeKernels::early;
  unsigned* done = early ? completion_counters() + kEarlyCounterBase : nullptr;
  // LOOM_DECODE_EXTRA repeats a launch (not with early: its counts assume one gate/up launch)
  for (int i = 0; i < (early ? 1 : launches_of("gate_up")); ++i)
    launch_pdl(moe_decode_gate_up_kernel, up_grid, kThreads, 0, s, static_cast<const bf16*>(x), ids, expert_begin,
               local_experts, k, static_cast<const bf16*>(w_gate_up), ii, hi, static_cast<bf16*>(act),
               early ? done + 1 : nullptr);
  if (early) {
    launch_pdl(down.early, down_grid, 32 * groups * k, 0, s, static_cast<const bf16*>(act), ids, weights,
               expert_begin, local_experts, k, static_cast<const bf16*>(w_down), hi, ii, static_cast<bf16*>(out), done,
               static_cast<unsigned>(up_grid.x * top_k));
    return;
  }
  for (int i = 0; i < launches_of("down"); ++i)
    launch_pdl(down.kernel, down_grid, 32 * groups * k, 0, s, static_cast<const bf16*>(act), ids, weights,
               expert_begin, local_experts, k, static_cast<const bf16*>(w_down), hi, ii, static_cast<bf16*>(out));
}

}  // namespace loom::kernels::cuda
