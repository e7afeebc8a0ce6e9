// Mixture-of-experts: router softmax + top-k, the device-side sort of routed tokens by expert,
// the grouped bf16 tensor-core GEMM over the sorted rows (WMMA = mma.sync, cp.async pipeline),
// and the weighted combine.
#include <mma.h>

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
constexpr int kMaxPlanExperts = 1024;
// One block does it all (counts, scan, tiles, scatter): no host round trip, one launch.
__global__ void moe_plan_kernel(const int32_t* ids, const float* wts, int64_t slots, int64_t expert_begin,
                                int experts, int block_m, int64_t max_tiles, int32_t* offsets, int32_t* sorted_token,
                                float* sorted_weight, int32_t* slot_pos, int32_t* tile_expert, int32_t* tile_row,
                                int32_t* num_tiles, int k) {
  __shared__ int counts[kMaxPlanExperts];
  __shared__ int starts[kMaxPlanExperts + 1];
  wait_then_allow_dependents();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < slots; i += blockDim.x) {
    const int64_t e = ids[i] - expert_begin;
    if (e >= 0 && e < experts) atomicAdd(&counts[e], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0, tiles = 0;
    for (int e = 0; e < experts; ++e) {
      starts[e] = run;
      offsets[e] = run;
      for (int r = 0; r < counts[e] && tiles < max_tiles; r += block_m, ++tiles) {
        tile_expert[tiles] = e;
        tile_row[tiles] = run + r;
      }
      run += counts[e];
    }
    starts[experts] = run;
    offsets[experts] = run;
    *num_tiles = tiles;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) counts[e] = 0;  // reused as cursors
  __syncthreads();
  for (int64_t i = threadIdx.x; i < slots; i += blockDim.x) {
    const int64_t e = ids[i] - expert_begin;
    if (e >= 0 && e < experts) {
      const int pos = starts[e] + atomicAdd(&counts[e], 1);
      sorted_token[pos] = static_cast<int32_t>(i / k);
      sorted_weight[pos] = wts[i];
      slot_pos[i] = pos;
    } else {
      slot_pos[i] = -1;
    }
  }
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

int moe_block_m(int64_t routed_slots, int64_t local_experts) {
  return routed_slots <= 16 * local_experts ? 16 : 64;
}

int64_t moe_max_tiles(int64_t routed_slots, int64_t local_experts, int block_m) {
  // Σ_e ceil(c_e / m) <= floor(Σ c_e / m) + (number of non-empty experts)
  return routed_slots / block_m + std::min(routed_slots, local_experts) + 1;
}

void moe_plan(const int32_t* ids, const float* weights, int64_t t, int64_t k, int64_t expert_begin,
              int64_t local_experts, const MoePlan& p, cudaStream_t s) {
  LOOM_CHECK(local_experts >= 1 && local_experts <= kMaxPlanExperts, "moe_plan: ", local_experts,
             " local experts (supported: 1..", kMaxPlanExperts, ")");
  launch_pdl(moe_plan_kernel, 1, 1024, 0, s, ids, weights, t * k, expert_begin, static_cast<int>(local_experts),
             p.block_m, p.max_tiles, p.offsets, p.sorted_token, p.sorted_weight, p.slot_pos, p.tile_expert,
             p.tile_row, p.num_tiles, static_cast<int>(k));
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
  launch_pdl(moe_combine_kernel, static_cast<unsigned>(t), h >= 1024 ? 256 : 64, 0, s, static_cast<const bf16*>(y),
             slot_pos, static_cast<int>(k), h, static_cast<bf16*>(out));
}

}  // namespace loom::kernels::cuda
