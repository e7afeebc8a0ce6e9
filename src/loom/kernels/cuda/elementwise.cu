// Row-wise and elementwise kernels: embedding / gather, RMSNorm (+ residual), q/k norm + RoPE,
// SiLU-and-mul, token selection and the copy used to measure bandwidth.
#include <algorithm>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/norm_rope.cuh"
#include "loom/kernels/cuda/pdl.cuh"
#include "loom/kernels/cuda/row_visit.cuh"

namespace loom::kernels::cuda {
namespace {

// One block per output row; 16-byte copies when the row allows it.
__global__ void copy_rows_kernel(const bf16* src, const int32_t* rows, bf16* out, int64_t dim, int64_t limit,
                                 int64_t first = 0) {
  wait_then_allow_dependents();
  const int64_t i = blockIdx.x;
  const int64_t r = rows[i] - first;
  bf16* dst = out + i * dim;
  const bool valid = r >= 0 && r < limit;
  if (dim % 8 == 0) {
    const uint4* s = reinterpret_cast<const uint4*>(src + static_cast<int64_t>(r) * dim);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int64_t c = threadIdx.x; c < dim / 8; c += blockDim.x) d[c] = valid ? s[c] : make_uint4(0, 0, 0, 0);
  } else {
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x)
      dst[c] = valid ? src[static_cast<int64_t>(r) * dim + c] : to_bf(0.0f);
  }
}

__global__ void rms_norm_kernel(const bf16* x, bf16* residual, const bf16* w, bf16* out, int64_t dim, float eps) {
  const int64_t row = blockIdx.x;
  const bf16* xr = x + row * dim;
  bf16* rr = residual ? residual + row * dim : nullptr;
  float ss = 0;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
    float v = to_f(xr[c]);
    if (rr) {
      const bf16 sum = to_bf(to_f(rr[c]) + v);
      rr[c] = sum;
      v = to_f(sum);
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(dim) + eps);
  const bf16* src = rr ? rr : xr;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x)
    out[row * dim + c] = to_bf(to_f(src[c]) * inv * to_f(w[c]));
}

// The same with 16-byte chunks held in registers (dim % 8 == 0, at most kNormChunks chunks per
// thread): one load of x (and of the residual) per chunk, all in flight together, no second pass
// over memory. Same arithmetic and rounding as rms_norm_kernel.
constexpr int kNormThreads = 256, kNormChunks = 4;
__global__ void __launch_bounds__(kNormThreads) rms_norm_vec_kernel(const bf16* x, bf16* residual, const bf16* w,
                                                                    bf16* out, int64_t dim, float eps,
                                                                    bool trigger_first) {
  const int64_t row = blockIdx.x;
  const int chunks = static_cast<int>(dim / 8);
  const uint4* xr = reinterpret_cast<const uint4*>(x + row * dim);
  uint4* rr = residual ? reinterpret_cast<uint4*>(residual + row * dim) : nullptr;
  uint4 xv[kNormChunks], rv[kNormChunks], wv[kNormChunks];
#pragma unroll
  for (int i = 0; i < kNormChunks; ++i) {
    const int c = threadIdx.x + i * kNormThreads;
    if (c < chunks) wv[i] = reinterpret_cast<const uint4*>(w)[c];  // a weight: before the wait (pdl.cuh)
  }
  wait_and_allow_dependents(trigger_first);
#pragma unroll
  for (int i = 0; i < kNormChunks; ++i) {
    const int c = threadIdx.x + i * kNormThreads;
    if (c < chunks) {
      xv[i] = xr[c];
      if (rr) rv[i] = rr[c];
    }
  }
  float v[kNormChunks][8];
  float ss = 0;
#pragma unroll
  for (int i = 0; i < kNormChunks; ++i) {
    if (threadIdx.x + i * kNormThreads >= chunks) break;
    const bf16* xe = reinterpret_cast<const bf16*>(&xv[i]);
    bf16* re = reinterpret_cast<bf16*>(&rv[i]);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float f = to_f(xe[j]);
      if (rr) {
        re[j] = to_bf(to_f(re[j]) + f);
        f = to_f(re[j]);
      }
      v[i][j] = f;
      ss += f * f;
    }
    if (rr) rr[threadIdx.x + i * kNormThreads] = rv[i];
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(dim) + eps);
#pragma unroll
  for (int i = 0; i < kNormChunks; ++i) {
    const int c = threadIdx.x + i * kNormThreads;
    if (c >= chunks) break;
    const bf16* we = reinterpret_cast<const bf16*>(&wv[i]);
    uint4 o;
    bf16* oe = reinterpret_cast<bf16*>(&o);
#pragma unroll
    for (int j = 0; j < 8; ++j) oe[j] = to_bf(v[i][j] * inv * to_f(we[j]));
    reinterpret_cast<uint4*>(out + row * dim)[c] = o;
  }
}

__global__ void add_kernel(bf16* r, const bf16* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    r[i] = to_bf(to_f(r[i]) + to_f(x[i]));
}

// Any head size and partial rotation (qk_norm_rope_regs_kernel below takes the common shapes):
// a block per token (prefill) or per 8 heads of a token (few tokens: a decode step's one token
// would otherwise walk its 36 heads on one SM): the token's RoPE angles (sincosf, the costly part
// at large positions) are computed once per block into shared memory and shared by its q and k
// heads; then one warp per head stages the head in shared memory for the norm and the rotation.
// The arithmetic is norm_rope.cuh's, which the decode attention kernel's fold shares bit for bit.
constexpr int kRopeWarps = 8;

__global__ void qk_norm_rope_kernel(bf16* q, bf16* k, const bf16* q_norm, const bf16* k_norm,
                                    const int32_t* positions, const float* inv_freq, int64_t hq, int64_t hk,
                                    int64_t d, int64_t rotary_dim, float scaling, float eps, int heads_per_warp) {
  extern __shared__ float smem[];
  const int64_t half = rotary_dim / 2;
  float* cos_t = smem;                     // [half]
  float* sin_t = smem + half;              // [half]
  float* bufs = smem + 2 * half;           // [kRopeWarps][d]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t = blockIdx.x;
  const int64_t head_begin = static_cast<int64_t>(blockIdx.y) * kRopeWarps * heads_per_warp;
  const int64_t head_end = min(hq + hk, head_begin + kRopeWarps * heads_per_warp);
  const float pos = static_cast<float>(positions[t]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) rope_cos_sin(pos, inv_freq[i], scaling, cos_t[i], sin_t[i]);
  // The angles come from the step's positions (uploaded before it): made while the kernel before
  // ends; q and k are its output (pdl.cuh).
  wait_then_allow_dependents();
  __syncthreads();
  float* buf = bufs + warp * d;
  for (int64_t h = head_begin + warp; h < head_end; h += kRopeWarps) {
    const bool is_q = h < hq;
    bf16* v = is_q ? q + (t * hq + h) * d : k + (t * hk + (h - hq)) * d;
    const bf16* norm = is_q ? q_norm : k_norm;
    float ss = 0;
    for (int64_t c = lane; c < d; c += 32) {
      const float x = to_f(v[c]);
      buf[c] = x;
      ss = add_square(ss, x);
    }
    if (norm) {
      const float inv = rms_inverse(warp_sum(ss), d, eps);
      for (int64_t c = lane; c < d; c += 32) buf[c] = rms_scaled(buf[c], inv, norm[c]);
    }
    __syncwarp();
    for (int64_t c = lane; c < d; c += 32) {
      float r = buf[c];
      if (c < rotary_dim) {
        const int64_t i = c < half ? c : c - half;
        r = rope_rotate(buf[c], buf[c < half ? c + half : c - half], cos_t[i], sin_t[i], c < half);
      }
      v[c] = to_bf(r);
    }
    __syncwarp();  // buf is refilled by this warp's next head
  }
}

// The same per head with the head in registers (rotary_dim == d, d in {64, 128, 256}): a warp per
// token, or per slice of its heads when few tokens would leave SMs idle. Lane holds elements
// lane + 32j, whose rotation partner is element j ± J/2 of the same lane (the decode attention
// fold's layout), so no shared memory and no barrier; the warp makes the token's angles
// (lane + 32m) itself, and issues the loads of kHeadsInFlight heads before it uses any (one head's
// 256 bytes at a time per warp left HBM mostly idle: 150 µs for 8K tokens of Qwen3-30B-A3B on an
// H100, bench/NOTES.md). The operations and their order are qk_norm_rope_kernel's, so the results
// are the same bits.
template <int D>
__host__ __device__ constexpr int heads_in_flight() { return D <= 128 ? 4 : 2; }

template <int D>
__global__ void __launch_bounds__(256) qk_norm_rope_regs_kernel(bf16* q, bf16* k, const bf16* q_norm,
                                                                 const bf16* k_norm, const int32_t* positions,
                                                                 const float* inv_freq, int64_t tokens, int hq, int hk,
                                                                 int heads_per_slice, int slices, float scaling,
                                                                 float eps) {
  constexpr int J = D / 32, H = J / 2, G = heads_in_flight<D>();
  const int lane = threadIdx.x & 31;
  const int64_t w = blockIdx.x * int64_t{blockDim.x / 32} + (threadIdx.x >> 5);
  const bool active = w < tokens * slices;
  const int64_t t = active ? w / slices : 0;
  float cs[H], sn[H];
  bf16 qw[J], kw[J];
  if (active) {  // the step's positions and the weights: before the wait (pdl.cuh)
    const float pos = static_cast<float>(positions[t]);
#pragma unroll
    for (int m = 0; m < H; ++m) rope_cos_sin(pos, inv_freq[lane + 32 * m], scaling, cs[m], sn[m]);
#pragma unroll
    for (int j = 0; j < J; ++j) {
      if (q_norm) qw[j] = q_norm[lane + 32 * j];
      if (k_norm) kw[j] = k_norm[lane + 32 * j];
    }
  }
  wait_then_allow_dependents();
  if (!active) return;
  const int h_begin = static_cast<int>(w % slices) * heads_per_slice;
  const int h_end = min(hq + hk, h_begin + heads_per_slice);
  for (int h0 = h_begin; h0 < h_end; h0 += G) {
    float x[G][J];
    bf16* v[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int h = h0 + g;
      v[g] = h < hq ? q + (t * hq + h) * D : k + (t * hk + (h - hq)) * D;
      if (h < h_end) {
#pragma unroll
        for (int j = 0; j < J; ++j) x[g][j] = to_f(v[g][lane + 32 * j]);
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const int h = h0 + g;
      if (h >= h_end) break;
      const bool is_q = h < hq;
      float ss = 0;
#pragma unroll
      for (int j = 0; j < J; ++j) ss = add_square(ss, x[g][j]);
      if (is_q ? q_norm != nullptr : k_norm != nullptr) {
        const float inv = rms_inverse(warp_sum(ss), D, eps);
#pragma unroll
        for (int j = 0; j < J; ++j) x[g][j] = rms_scaled(x[g][j], inv, is_q ? qw[j] : kw[j]);
      }
#pragma unroll
      for (int j = 0; j < J; ++j) {
        const int m = j < H ? j : j - H;
        v[g][lane + 32 * j] = to_bf(rope_rotate(x[g][j], x[g][j < H ? j + H : j - H], cs[m], sn[m], j < H));
      }
    }
  }
}

// silu(gate) * up; `vec` elements a thread (8: one 16-byte load of each half) when the row allows.
template <int vec>
__global__ void silu_and_mul_kernel(const bf16* gu, bf16* out, int64_t rows, int64_t inter) {
  wait_then_allow_dependents();
  const int64_t per_row = inter / vec, n = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row, c = (i % per_row) * vec;
    bf16 g[vec], u[vec], o[vec];
    if constexpr (vec == 8) {
      *reinterpret_cast<uint4*>(g) = *reinterpret_cast<const uint4*>(gu + r * 2 * inter + c);
      *reinterpret_cast<uint4*>(u) = *reinterpret_cast<const uint4*>(gu + r * 2 * inter + inter + c);
    } else {
      g[0] = gu[r * 2 * inter + c];
      u[0] = gu[r * 2 * inter + inter + c];
    }
#pragma unroll
    for (int j = 0; j < vec; ++j) {
      const float gf = to_f(g[j]);
      o[j] = to_bf(gf / (1.0f + __expf(-gf)) * to_f(u[j]));
    }
    if constexpr (vec == 8) *reinterpret_cast<uint4*>(out + r * inter + c) = *reinterpret_cast<const uint4*>(o);
    else out[r * inter + c] = o[0];
  }
}

__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// (value, index) arg-max with ties to the lower index.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// One row's arg-max (ties to the lower id), with Gumbel noise per (seed, offset, row, id) when
// temperature > 0. The row is read in 16-byte chunks where it can be (row_visit.cuh: bs-1 decode
// reads one 151,936-token row a step); any reading order gives the same token, (value, -id) being
// a total order.
constexpr int kSelectUnroll = 4;

struct Best {
  float v = -INFINITY;
  int i = 0x7fffffff;
  __device__ __forceinline__ void consider(float x, int c, float temperature, uint64_t seed, uint64_t offset,
                                           int64_t row) {
    if (temperature > 0) {
      const uint64_t h = mix64(seed ^ mix64(offset * 0x100000001b3ull + row) ^ static_cast<uint64_t>(c) * 0x9e37ull);
      const float u = (static_cast<float>(h >> 40) + 0.5f) * 0x1p-24f;  // (0, 1)
      x = x / temperature - __logf(-__logf(u));                          // + Gumbel noise
    }
    if (better(x, c, v, i)) v = x, i = c;
  }
};

__global__ void select_tokens_kernel(const bf16* logits, int64_t vocab, float temperature, uint64_t seed,
                                     uint64_t offset, int32_t* out) {
  const int64_t row = blockIdx.x;
  const bf16* l = logits + row * vocab;
  Best b;
  visit_row<kSelectUnroll>(block_share(), l, vocab, row_vectorizes(l, vocab), [&](int64_t c, float x) {
    b.consider(x, static_cast<int>(c), temperature, seed, offset, row);
  });
  float best = b.v;
  int best_i = b.i;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (better(ov, oi, best, best_i)) best = ov, best_i = oi;
  }
  __shared__ float sv[32];
  __shared__ int si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sv[warp] = best, si[warp] = best_i;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
      if (better(sv[w], si[w], best, best_i)) best = sv[w], best_i = si[w];
    out[row] = best_i == 0x7fffffff ? 0 : best_i;
  }
}

__global__ void copy_kernel_impl(const uint4* src, uint4* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

int row_threads(int64_t dim) { return dim >= 1024 ? 256 : dim >= 256 ? 128 : 32; }

}  // namespace

void embedding(const void* table, const int32_t* ids, void* out, int64_t n, int64_t dim, int64_t vocab,
               cudaStream_t s) {
  if (n == 0) return;
  launch_pdl(copy_rows_kernel, static_cast<unsigned>(n), 128, 0, s, static_cast<const bf16*>(table), ids,
             static_cast<bf16*>(out), dim, vocab, int64_t{0});
}

void embedding_slice(const void* table, const int32_t* ids, void* out, int64_t n, int64_t dim, int64_t first,
                     int64_t rows, cudaStream_t s) {
  if (n == 0) return;
  launch_pdl(copy_rows_kernel, static_cast<unsigned>(n), 128, 0, s, static_cast<const bf16*>(table), ids,
             static_cast<bf16*>(out), dim, rows, first);
}

void gather_rows(const void* x, const int32_t* rows, void* out, int64_t n, int64_t dim, cudaStream_t s) {
  if (n == 0) return;
  launch_pdl(copy_rows_kernel, static_cast<unsigned>(n), 128, 0, s, static_cast<const bf16*>(x), rows,
             static_cast<bf16*>(out), dim, int64_t{INT64_MAX}, int64_t{0});
}

void rms_norm(const void* x, void* residual, const void* w, void* out, int64_t rows, int64_t dim, float eps,
              cudaStream_t s) {
  if (rows == 0) return;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (dim % 8 == 0 && dim / 8 <= int64_t{kNormThreads} * kNormChunks && aligned(x) && aligned(w) && aligned(out) &&
      (!residual || aligned(residual))) {
    launch_pdl(rms_norm_vec_kernel, static_cast<unsigned>(rows), kNormThreads, 0, s, static_cast<const bf16*>(x),
               static_cast<bf16*>(residual), static_cast<const bf16*>(w), static_cast<bf16*>(out), dim, eps, pdl_trigger_first());
    if (launches_of("norm") > 1)  // the same output again, from the updated residual (pdl.cuh)
      launch_pdl(rms_norm_vec_kernel, static_cast<unsigned>(rows), kNormThreads, 0, s,
                 static_cast<const bf16*>(residual ? residual : x), static_cast<bf16*>(nullptr),
                 static_cast<const bf16*>(w), static_cast<bf16*>(out), dim, eps, pdl_trigger_first());
    return;
  }
  rms_norm_kernel<<<static_cast<unsigned>(rows), row_threads(dim), 0, s>>>(
      static_cast<const bf16*>(x), static_cast<bf16*>(residual), static_cast<const bf16*>(w),
      static_cast<bf16*>(out), dim, eps);
  CUDA_CHECK_LAUNCH("rms_norm");
}

void add_inplace(void* r, const void* x, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<grid_for(n, 256), 256, 0, s>>>(static_cast<bf16*>(r), static_cast<const bf16*>(x), n);
  CUDA_CHECK_LAUNCH("add_inplace");
}

namespace {
template <int D>
void launch_qk_norm_rope_regs(bf16* q, bf16* k, const bf16* q_norm, const bf16* k_norm, const int32_t* positions,
                              const float* inv_freq, int64_t tokens, int64_t hq, int64_t hk, float scaling, float eps,
                              cudaStream_t s) {
  constexpr int G = heads_in_flight<D>();
  const int heads = static_cast<int>(hq + hk);
  // About 16K warps when the tokens alone give fewer (a decode step: a warp per G heads).
  const int64_t max_slices = (heads + G - 1) / G;
  const int64_t slices = std::clamp<int64_t>((16384 + tokens - 1) / tokens, 1, max_slices);
  const int per = static_cast<int>(((heads + slices - 1) / slices + G - 1) / G * G);
  const int64_t warps = tokens * slices;
  launch_pdl(qk_norm_rope_regs_kernel<D>, static_cast<unsigned>((warps + 7) / 8), 256, 0, s, q, k, q_norm, k_norm,
             positions, inv_freq, tokens, static_cast<int>(hq), static_cast<int>(hk), per, static_cast<int>(slices),
             scaling, eps);
}
}  // namespace

void qk_norm_rope(void* q, void* k, const void* q_norm, const void* k_norm, const int32_t* positions,
                  const float* inv_freq, int64_t tokens, int64_t hq, int64_t hk, int64_t d, int64_t rotary_dim,
                  float scaling, float eps, cudaStream_t s) {
  if (tokens == 0 || hq + hk == 0) return;
  auto* qb = static_cast<bf16*>(q);
  auto* kb = static_cast<bf16*>(k);
  const auto* qn = static_cast<const bf16*>(q_norm);
  const auto* kn = static_cast<const bf16*>(k_norm);
  if (rotary_dim == d && hq + hk < (1 << 20)) {
    switch (d) {
      case 64: return launch_qk_norm_rope_regs<64>(qb, kb, qn, kn, positions, inv_freq, tokens, hq, hk, scaling, eps, s);
      case 128: return launch_qk_norm_rope_regs<128>(qb, kb, qn, kn, positions, inv_freq, tokens, hq, hk, scaling, eps, s);
      case 256: return launch_qk_norm_rope_regs<256>(qb, kb, qn, kn, positions, inv_freq, tokens, hq, hk, scaling, eps, s);
      default: break;
    }
  }
  const size_t smem = (static_cast<size_t>(rotary_dim / 2) * 2 + kRopeWarps * static_cast<size_t>(d)) * sizeof(float);
  // Enough blocks to spread a small batch's heads over the SMs; a large one keeps a block per token.
  const int64_t heads = hq + hk;
  const int heads_per_warp = tokens >= 128 ? static_cast<int>((heads + kRopeWarps - 1) / kRopeWarps) : 1;
  const dim3 grid(static_cast<unsigned>(tokens),
                  static_cast<unsigned>((heads + kRopeWarps * heads_per_warp - 1) / (kRopeWarps * heads_per_warp)));
  launch_pdl(qk_norm_rope_kernel, grid, 32 * kRopeWarps, smem, s, qb, kb, qn, kn, positions, inv_freq, hq, hk, d,
             rotary_dim, scaling, eps, heads_per_warp);
}

void silu_and_mul(const void* gate_up, void* out, int64_t rows, int64_t inter, cudaStream_t s) {
  const int64_t n = rows * inter;
  if (n == 0) return;
  const auto* gu = static_cast<const bf16*>(gate_up);
  auto* o = static_cast<bf16*>(out);
  const bool aligned = reinterpret_cast<uintptr_t>(gu) % 16 == 0 && reinterpret_cast<uintptr_t>(o) % 16 == 0;
  if (inter % 8 == 0 && aligned) {
    const int64_t m = n / 8;
    launch_pdl(silu_and_mul_kernel<8>, grid_for(m, 256), 256, 0, s, gu, o, rows, inter);
  } else {
    launch_pdl(silu_and_mul_kernel<1>, grid_for(n, 256), 256, 0, s, gu, o, rows, inter);
  }
}

void select_tokens(const void* logits, int64_t rows, int64_t vocab, float temperature, uint64_t seed,
                   uint64_t offset, int32_t* out, cudaStream_t s) {
  if (rows == 0) return;
  select_tokens_kernel<<<static_cast<unsigned>(rows), 1024, 0, s>>>(static_cast<const bf16*>(logits), vocab,
                                                                    temperature, seed, offset, out);
  CUDA_CHECK_LAUNCH("select_tokens");
}

void copy_kernel(const void* src, void* dst, int64_t nbytes, cudaStream_t s) {
  const int64_t n = nbytes / 16;
  copy_kernel_impl<<<grid_for(n, 512) > 132 * 16 ? 132 * 16 : grid_for(n, 512), 512, 0, s>>>(
      static_cast<const uint4*>(src), static_cast<uint4*>(dst), n);
  CUDA_CHECK_LAUNCH("copy_kernel");
}

}  // namespace loom::kernels::cuda
