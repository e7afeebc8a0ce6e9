// Mixture-of-experts: router softmax + top-k, the device-side sort of routed tokens by expert,
// the grouped bf16 tensor-core GEMM over the sorted rows (WMMA = mma.sync, cp.async pipeline),
// and the weighted combine.
#include <mma.h>

#include <algorithm>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/pdl.cuh"
#include "loom/kernels/cuda/route_topk.cuh"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

// ---------------- router ----------------
// One warp per token (route_topk.cuh).
constexpr int kRouteWarps = 4;
__global__ void route_topk_kernel(const bf16* logits, int64_t t, int e, int k, bool renormalize, float* weights,
                                  int32_t* ids, int groups, int topk_group, float scale) {
  extern __shared__ float probs_all[];
  wait_then_allow_dependents();
  const int warp = threadIdx.x >> 5;
  const int64_t tok = blockIdx.x * int64_t(kRouteWarps) + warp;
  if (tok >= t) return;
  route_token(logits, tok, e, k, renormalize, weights, ids, groups, topk_group, scale, probs_all + warp * e);
}

// ---------------- sort by expert ----------------
constexpr int kMaxPlanExperts = 1024, kPlanThreads = 1024;

// Exclusive prefix sums of a and b over the block (thread i holds element i); totals returned too.
__device__ __forceinline__ void block_exclusive_scan2(int& a, int& b, int& total_a, int& total_b) {
  __shared__ int warp_a[32], warp_b[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int ia = a, ib = b;  // inclusive within the warp
  for (int o = 1; o < 32; o <<= 1) {
    const int xa = __shfl_up_sync(0xffffffffu, ia, o), xb = __shfl_up_sync(0xffffffffu, ib, o);
    if (lane >= o) ia += xa, ib += xb;
  }
  if (lane == 31) warp_a[warp] = ia, warp_b[warp] = ib;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    int sa = lane < warps ? warp_a[lane] : 0, sb = lane < warps ? warp_b[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int xa = __shfl_up_sync(0xffffffffu, sa, o), xb = __shfl_up_sync(0xffffffffu, sb, o);
      if (lane >= o) sa += xa, sb += xb;
    }
    warp_a[lane] = sa, warp_b[lane] = sb;  // inclusive over warps
  }
  __syncthreads();
  const int before_a = warp > 0 ? warp_a[warp - 1] : 0, before_b = warp > 0 ? warp_b[warp - 1] : 0;
  total_a = warp_a[31], total_b = warp_b[31];
  a = before_a + ia - a, b = before_b + ib - b;
}

// Expert e's tiles of block_m rows from tile first_tile on (thread e of a plan kernel).
__device__ __forceinline__ void write_tiles(int e, int count, int start, int first_tile, int block_m,
                                            int64_t max_tiles, int32_t* tile_expert, int32_t* tile_row) {
  for (int r = 0, tile = first_tile; r < count && tile < max_tiles; r += block_m, ++tile) {
    tile_expert[tile] = e;
    tile_row[tile] = start + r;
  }
}

// One block does it all (counts, scan, tiles, scatter): no host round trip, one launch. Thread e
// owns expert e's count, start and tiles (a serial loop over the experts by one thread took
// 14 µs a layer at batch 128: bench/NOTES.md). Large batches take the three kernels below.
__global__ void __launch_bounds__(kPlanThreads) moe_plan_kernel(const int32_t* ids, const float* wts, int64_t slots,
                                                                int64_t expert_begin, int experts, int block_m,
                                                                int64_t max_tiles, int32_t* offsets,
                                                                int32_t* sorted_token, float* sorted_weight,
                                                                int32_t* slot_pos, int32_t* tile_expert,
                                                                int32_t* tile_row, int32_t* num_tiles, int k) {
  __shared__ int counts[kMaxPlanExperts];
  __shared__ int starts[kMaxPlanExperts];
  wait_then_allow_dependents();
  const int e = threadIdx.x;
  if (e < experts) counts[e] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < slots; i += blockDim.x) {
    const int64_t x = ids[i] - expert_begin;
    if (x >= 0 && x < experts) atomicAdd(&counts[x], 1);
  }
  __syncthreads();
  const int count = e < experts ? counts[e] : 0;
  int start = count, first_tile = (count + block_m - 1) / block_m, rows = 0, tiles = 0;
  block_exclusive_scan2(start, first_tile, rows, tiles);
  if (e < experts) {
    starts[e] = start;
    offsets[e] = start;
    write_tiles(e, count, start, first_tile, block_m, max_tiles, tile_expert, tile_row);
    counts[e] = 0;  // reused as cursors
  }
  if (e == 0) {
    offsets[experts] = rows;
    *num_tiles = static_cast<int32_t>(tiles < max_tiles ? tiles : max_tiles);
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < slots; i += blockDim.x) {
    const int64_t x = ids[i] - expert_begin;
    if (x >= 0 && x < experts) {
      const int pos = starts[x] + atomicAdd(&counts[x], 1);
      sorted_token[pos] = static_cast<int32_t>(i / k);
      sorted_weight[pos] = wts[i];
      slot_pos[i] = pos;
    } else {
      slot_pos[i] = -1;
    }
  }
}

// The same plan over many blocks, for prefill-sized batches: one block's scatter, two scattered
// stores a slot from one SM, took 74 µs for 8K tokens x top-8 (bench/NOTES.md). Block b owns slots
// [b·chunk, (b+1)·chunk); counts[b][e] is first its count of expert e, then (after the scan) the
// first row of e that it fills. Within an expert, rows keep no slot order (neither does the one
// block's atomics): every row is computed on its own, so no result depends on it.
constexpr int kPlanSlotsPerBlock = 1024, kPlanMaxBlocks = 1024, kPlanCountThreads = 256;
constexpr int64_t kPlanManyBlocksFrom = 8192;  // slots (1,024 tokens x top-8)

__global__ void __launch_bounds__(kPlanCountThreads) moe_plan_count_kernel(const int32_t* ids, int64_t slots,
                                                                           int64_t chunk, int64_t expert_begin,
                                                                           int experts, int32_t* counts) {
  __shared__ int count[kMaxPlanExperts];
  for (int e = threadIdx.x; e < experts; e += blockDim.x) count[e] = 0;
  wait_then_allow_dependents();
  __syncthreads();
  const int64_t lo = blockIdx.x * chunk, hi = min(slots, lo + chunk);
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const int64_t x = ids[i] - expert_begin;
    if (x >= 0 && x < experts) atomicAdd(&count[x], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) counts[blockIdx.x * int64_t{experts} + e] = count[e];
}

__global__ void __launch_bounds__(kPlanThreads) moe_plan_scan_kernel(int32_t* counts, int blocks, int experts,
                                                                     int block_m, int64_t max_tiles, int32_t* offsets,
                                                                     int32_t* tile_expert, int32_t* tile_row,
                                                                     int32_t* num_tiles) {
  wait_then_allow_dependents();
  const int e = threadIdx.x;
  int count = 0;
  if (e < experts)
    for (int b = 0; b < blocks; ++b) count += counts[b * int64_t{experts} + e];
  int start = count, first_tile = (count + block_m - 1) / block_m, rows = 0, tiles = 0;
  block_exclusive_scan2(start, first_tile, rows, tiles);
  if (e < experts) {
    offsets[e] = start;
    write_tiles(e, count, start, first_tile, block_m, max_tiles, tile_expert, tile_row);
    for (int b = 0, row = start; b < blocks; ++b) {  // each block's first row of expert e
      int32_t& c = counts[b * int64_t{experts} + e];
      const int n = c;
      c = row;
      row += n;
    }
  }
  if (e == 0) {
    offsets[experts] = rows;
    *num_tiles = static_cast<int32_t>(tiles < max_tiles ? tiles : max_tiles);
  }
}

__global__ void __launch_bounds__(kPlanCountThreads) moe_plan_scatter_kernel(
    const int32_t* ids, const float* wts, int64_t slots, int64_t chunk, int64_t expert_begin, int experts,
    const int32_t* counts, int k, int32_t* sorted_token, float* sorted_weight, int32_t* slot_pos) {
  __shared__ int cursor[kMaxPlanExperts];
  wait_then_allow_dependents();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) cursor[e] = counts[blockIdx.x * int64_t{experts} + e];
  __syncthreads();
  const int64_t lo = blockIdx.x * chunk, hi = min(slots, lo + chunk);
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    const int64_t x = ids[i] - expert_begin;
    if (x >= 0 && x < experts) {
      const int pos = atomicAdd(&cursor[x], 1);
      sorted_token[pos] = static_cast<int32_t>(i / k);
      sorted_weight[pos] = wts[i];
      slot_pos[i] = pos;
    } else {
      slot_pos[i] = -1;
    }
  }
}

int64_t plan_blocks(int64_t slots) {
  return std::min<int64_t>((slots + kPlanSlotsPerBlock - 1) / kPlanSlotsPerBlock, kPlanMaxBlocks);
}

// ---------------- grouped GEMM ----------------
constexpr int kBN = 64, kBK = 64, kLds = kBK + 8, kThreads = 128;
// Pipeline depth: small-M tiles (decode) stream weights and want more bytes in flight.
template <int BM>
__host__ __device__ constexpr int stages_for() { return BM == 16 ? 5 : 3; }

struct GemmArgs {
  const bf16* a;
  const int32_t* a_rows;
  const bf16* b;
  int64_t b_stride;
  int n, k;
  bf16* c;
  const float* row_scale;
  const int32_t* offsets;
  const int32_t* tile_expert;
  const int32_t* tile_row;
  const int32_t* num_tiles;
};

// Tile BM x 64 of C per block, 4 warps, K in steps of 64 through a cp.async pipeline.
// VEC: K % 8 == 0 (16-byte rows); else element loads (tiny test shapes).
template <int BM, bool VEC>
__global__ void __launch_bounds__(kThreads) grouped_gemm_kernel(GemmArgs g) {
  using namespace nvcuda;
  constexpr int kStages = stages_for<BM>();
  constexpr int WARPS_M = BM >= 32 ? 2 : 1, WARPS_N = 4 / WARPS_M;
  constexpr int FM = BM / 16 / WARPS_M, FN = kBN / 16 / WARPS_N;
  wait_then_allow_dependents();
  const int tile = blockIdx.y;
  if (tile >= *g.num_tiles) return;
  const int e = g.tile_expert[tile];
  const int row0 = g.tile_row[tile], row_end = min(row0 + BM, g.offsets[e + 1]);
  const int n0 = blockIdx.x * kBN;
  if (n0 >= g.n) return;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* As = reinterpret_cast<bf16*>(smem_raw);                  // [kStages][BM][kLds]
  bf16* Bs = As + kStages * BM * kLds;                            // [kStages][kBN][kLds]
  const bf16* bmat = g.b + static_cast<int64_t>(e) * g.b_stride;  // [n, k]
  const int tid = threadIdx.x;

  // Source row of each A tile row (gathered for the gate/up GEMM).
  __shared__ int a_src[BM];
  for (int r = tid; r < BM; r += kThreads) {
    const int row = row0 + r;
    a_src[r] = row < row_end ? (g.a_rows ? g.a_rows[row] : row) : -1;
  }
  __syncthreads();

  auto load_stage = [&](int stage, int kt) {
    const int k0 = kt * kBK;
    bf16* as = As + stage * BM * kLds;
    bf16* bs = Bs + stage * kBN * kLds;
    if constexpr (VEC) {
      for (int c = tid; c < BM * (kBK / 8); c += kThreads) {
        const int r = c / (kBK / 8), kc = (c % (kBK / 8)) * 8;
        const bool ok = a_src[r] >= 0 && k0 + kc < g.k;
        const bf16* src = ok ? g.a + static_cast<int64_t>(a_src[r]) * g.k + k0 + kc : g.a;
        cp_async16(as + r * kLds + kc, src, ok);
      }
      for (int c = tid; c < kBN * (kBK / 8); c += kThreads) {
        const int r = c / (kBK / 8), kc = (c % (kBK / 8)) * 8;
        const bool ok = n0 + r < g.n && k0 + kc < g.k;
        const bf16* src = ok ? bmat + static_cast<int64_t>(n0 + r) * g.k + k0 + kc : bmat;
        cp_async16(bs + r * kLds + kc, src, ok);
      }
    } else {
      for (int c = tid; c < BM * kBK; c += kThreads) {
        const int r = c / kBK, kk = c % kBK;
        const bool ok = a_src[r] >= 0 && k0 + kk < g.k;
        as[r * kLds + kk] = ok ? g.a[static_cast<int64_t>(a_src[r]) * g.k + k0 + kk] : to_bf(0.0f);
      }
      for (int c = tid; c < kBN * kBK; c += kThreads) {
        const int r = c / kBK, kk = c % kBK;
        const bool ok = n0 + r < g.n && k0 + kk < g.k;
        bs[r * kLds + kk] = ok ? bmat[static_cast<int64_t>(n0 + r) * g.k + k0 + kk] : to_bf(0.0f);
      }
    }
  };

  const int warp = tid >> 5, wm = warp / WARPS_N, wn = warp % WARPS_N;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  const int ktiles = (g.k + kBK - 1) / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int stage = kt % kStages;
    const bf16* as = As + stage * BM * kLds;
    const bf16* bs = Bs + stage * kBN * kLds;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(fa[i], as + ((wm * FM + i) * 16) * kLds + kk, kLds);
#pragma unroll
      for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(fb[j], bs + ((wn * FN + j) * 16) * kLds + kk, kLds);
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    const int next = kt + kStages - 1;
    if (next < ktiles) load_stage(next % kStages, next);
    cp_async_commit();
  }
  cp_async_wait<0>();
  __syncthreads();

  // Epilogue through shared memory: scale rows, round to bf16, write the valid part.
  constexpr int kLdc = kBN + 4;
  float* cs = reinterpret_cast<float*>(smem_raw);  // [BM][kLdc], fits in the stage buffers
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
      wmma::store_matrix_sync(cs + ((wm * FM + i) * 16) * kLdc + (wn * FN + j) * 16, acc[i][j], kLdc,
                              wmma::mem_row_major);
  __syncthreads();
  for (int c = tid; c < BM * kBN; c += kThreads) {
    const int r = c / kBN, col = c % kBN, row = row0 + r;
    if (row >= row_end || n0 + col >= g.n) continue;
    const float scale = g.row_scale ? g.row_scale[row] : 1.0f;
    g.c[static_cast<int64_t>(row) * g.n + n0 + col] = to_bf(cs[r * kLdc + col] * scale);
  }
}

template <int BM, bool VEC>
void launch_gemm(const GemmArgs& g, int64_t max_tiles, cudaStream_t s) {
  constexpr int kStages = stages_for<BM>();
  const size_t smem = static_cast<size_t>(kStages) * (BM + kBN) * kLds * sizeof(bf16);
  static_assert(static_cast<size_t>(BM) * (kBN + 4) * 4 <= static_cast<size_t>(kStages) * (BM + kBN) * kLds * 2,
                "epilogue must fit in the stage buffers");
  allow_dynamic_smem(reinterpret_cast<const void*>(grouped_gemm_kernel<BM, VEC>), smem);
  const dim3 grid(static_cast<unsigned>((g.n + kBN - 1) / kBN), static_cast<unsigned>(max_tiles));
  launch_pdl(grouped_gemm_kernel<BM, VEC>, grid, kThreads, smem, s, g);
}

// ---------------- combine ----------------
__global__ void moe_combine_kernel(const bf16* y, const int32_t* slot_pos, int k, int64_t h, bf16* out) {
  wait_then_allow_dependents();
  const int64_t t = blockIdx.x;
  for (int64_t c = threadIdx.x; c < h; c += blockDim.x) {
    float acc = 0;
    for (int j = 0; j < k; ++j) {
      const int32_t p = slot_pos[t * k + j];
      if (p >= 0) acc += to_f(y[static_cast<int64_t>(p) * h + c]);
    }
    out[t * h + c] = to_bf(acc);
  }
}

// The same sums (slot order, f32) with 8 columns a thread in 16-byte loads, the token's slot rows
// staged in shared memory, and 8 slots' loads in flight before they are added (h % 8 == 0).
constexpr int kMaxCombineSlots = 32;
__global__ void moe_combine_vec_kernel(const bf16* y, const int32_t* slot_pos, int k, int64_t h, bf16* out) {
  __shared__ int32_t pos[kMaxCombineSlots];
  wait_then_allow_dependents();
  const int64_t t = blockIdx.x;
  if (threadIdx.x < k) pos[threadIdx.x] = slot_pos[t * k + threadIdx.x];
  __syncthreads();
  for (int64_t c = threadIdx.x * int64_t{8}; c < h; c += blockDim.x * int64_t{8}) {
    float acc[8] = {};
    for (int j0 = 0; j0 < k; j0 += 8) {
      uint4 v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const int j = j0 + u;
        const int32_t p = j < k ? pos[j] : -1;
        v[u] = p >= 0 ? *reinterpret_cast<const uint4*>(y + static_cast<int64_t>(p) * h + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        if (j0 + u >= k || pos[j0 + u] < 0) continue;
        const bf16* ve = reinterpret_cast<const bf16*>(&v[u]);
#pragma unroll
        for (int q = 0; q < 8; ++q) acc[q] += to_f(ve[q]);
      }
    }
    uint4 o;
    bf16* oe = reinterpret_cast<bf16*>(&o);
#pragma unroll
    for (int q = 0; q < 8; ++q) oe[q] = to_bf(acc[q]);
    *reinterpret_cast<uint4*>(out + t * h + c) = o;
  }
}

}  // namespace

void route_topk(const void* logits, int64_t t, int64_t e, int64_t k, bool renormalize, float* weights,
                int32_t* ids, cudaStream_t s, int64_t groups, int64_t topk_group, float scale) {
  LOOM_CHECK(k >= 1 && k <= e && k <= 32, "route_topk: top-", k, " of ", e, " experts (at most 32)");
  LOOM_CHECK(groups >= 1 && groups <= 32 && e % groups == 0 && topk_group >= 1 && topk_group <= groups &&
                 k <= topk_group * (e / groups),
             "route_topk: top-", k, " of ", e, " experts in the best ", topk_group, " of ", groups,
             " groups (at most 32 groups)");
  if (t == 0) return;
  const unsigned blocks = static_cast<unsigned>((t + kRouteWarps - 1) / kRouteWarps);
  launch_pdl(route_topk_kernel, blocks, 32 * kRouteWarps, kRouteWarps * e * sizeof(float), s,
             static_cast<const bf16*>(logits), t, static_cast<int>(e), static_cast<int>(k), renormalize, weights, ids,
             static_cast<int>(groups), static_cast<int>(topk_group), scale);
}

namespace {
__global__ void drop_routes_past_kernel(int32_t* ids, int64_t slots, int64_t k, const int32_t* valid_tokens) {
  wait_then_allow_dependents();
  const int64_t from = static_cast<int64_t>(*valid_tokens) * k;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = from + threadIdx.x + int64_t(blockIdx.x) * blockDim.x; i < slots; i += stride) ids[i] = -1;
}
}  // namespace

void drop_routes_past(int32_t* ids, int64_t t, int64_t k, const int32_t* valid_tokens, cudaStream_t s) {
  const int64_t slots = t * k;
  if (slots == 0) return;
  launch_pdl(drop_routes_past_kernel, static_cast<int>(std::min<int64_t>((slots + 255) / 256, 1024)), 256, 0, s, ids,
             slots, k, valid_tokens);
}

int moe_block_m(int64_t routed_slots, int64_t local_experts) {
  return routed_slots <= 16 * local_experts ? 16 : 64;
}

int64_t moe_max_tiles(int64_t routed_slots, int64_t local_experts, int block_m) {
  // Σ_e ceil(c_e / m) <= floor(Σ c_e / m) + (number of non-empty experts)
  return routed_slots / block_m + std::min(routed_slots, local_experts) + 1;
}

int64_t moe_plan_scratch_ints(int64_t routed_slots, int64_t local_experts) {
  return routed_slots >= kPlanManyBlocksFrom ? plan_blocks(routed_slots) * local_experts : 0;
}

void moe_plan(const int32_t* ids, const float* weights, int64_t t, int64_t k, int64_t expert_begin,
              int64_t local_experts, const MoePlan& p, cudaStream_t s) {
  LOOM_CHECK(local_experts >= 1 && local_experts <= kMaxPlanExperts, "moe_plan: ", local_experts,
             " local experts (supported: 1..", kMaxPlanExperts, ")");
  const int64_t slots = t * k;
  const int experts = static_cast<int>(local_experts);
  if (p.block_counts && slots >= kPlanManyBlocksFrom) {
    const int64_t blocks = plan_blocks(slots), chunk = (slots + blocks - 1) / blocks;
    launch_pdl(moe_plan_count_kernel, static_cast<unsigned>(blocks), kPlanCountThreads, 0, s, ids, slots, chunk,
               expert_begin, experts, p.block_counts);
    launch_pdl(moe_plan_scan_kernel, 1, kPlanThreads, 0, s, p.block_counts, static_cast<int>(blocks), experts,
               p.block_m, p.max_tiles, p.offsets, p.tile_expert, p.tile_row, p.num_tiles);
    launch_pdl(moe_plan_scatter_kernel, static_cast<unsigned>(blocks), kPlanCountThreads, 0, s, ids, weights, slots,
               chunk, expert_begin, experts, p.block_counts, static_cast<int>(k), p.sorted_token, p.sorted_weight,
               p.slot_pos);
    return;
  }
  launch_pdl(moe_plan_kernel, 1, kPlanThreads, 0, s, ids, weights, slots, expert_begin, experts, p.block_m,
             p.max_tiles, p.offsets, p.sorted_token, p.sorted_weight, p.slot_pos, p.tile_expert, p.tile_row,
             p.num_tiles, static_cast<int>(k));
}

void moe_grouped_gemm(const void* a, const int32_t* a_rows, const void* b, int64_t b_expert_stride, int64_t n,
                      int64_t kdim, void* c, const float* row_scale, const MoePlan& p, cudaStream_t s) {
  if (p.max_tiles == 0 || n == 0) return;
  GemmArgs g{static_cast<const bf16*>(a), a_rows, static_cast<const bf16*>(b), b_expert_stride,
             static_cast<int>(n), static_cast<int>(kdim), static_cast<bf16*>(c), row_scale, p.offsets,
             p.tile_expert, p.tile_row, p.num_tiles};
  const bool vec = kdim % 8 == 0 && reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0;
  if (p.block_m == 16) {
    vec ? launch_gemm<16, true>(g, p.max_tiles, s) : launch_gemm<16, false>(g, p.max_tiles, s);
  } else {
    vec ? launch_gemm<64, true>(g, p.max_tiles, s) : launch_gemm<64, false>(g, p.max_tiles, s);
  }
}

void moe_combine(const void* y, const int32_t* slot_pos, int64_t t, int64_t k, int64_t h, void* out,
                 cudaStream_t s) {
  if (t == 0) return;
  const bool vec = h % 8 == 0 && k <= kMaxCombineSlots && reinterpret_cast<uintptr_t>(y) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vec) {
    const int threads = static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, (h / 8 + 31) / 32 * 32)));
    launch_pdl(moe_combine_vec_kernel, static_cast<unsigned>(t), threads, 0, s, static_cast<const bf16*>(y), slot_pos,
               static_cast<int>(k), h, static_cast<bf16*>(out));
    return;
  }
  launch_pdl(moe_combine_kernel, static_cast<unsigned>(t), h >= 1024 ? 256 : 64, 0, s, static_cast<const bf16*>(y),
             slot_pos, static_cast<int>(k), h, static_cast<bf16*>(out));
}

}  // namespace loom::kernels::cuda
