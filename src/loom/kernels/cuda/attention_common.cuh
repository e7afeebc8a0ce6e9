// What the paged attention kernels share (attention.cu: prefill and the general case;
// decode_attention.cu: one query token a sequence): the cache addressing, the kernel arguments,
// and the mma.sync / ldmatrix fragments of the m16n8k16 bf16 tensor-core tile.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"

namespace loom::kernels::cuda::attn {

__device__ __forceinline__ int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

__host__ __device__ __forceinline__ int64_t v_dim(const PagedKvArgs& kv) { return kv.dv ? kv.dv : kv.d; }

__device__ __forceinline__ int64_t kv_slot(const PagedKvArgs& kv, int64_t seq, int64_t pos) {
  return static_cast<int64_t>(kv.page_table[seq * kv.max_pages + pos / kv.page_size]) * kv.page_size +
         pos % kv.page_size;
}

__device__ __forceinline__ int seq_of_token(const int32_t* token_starts, int64_t num_seqs, int64_t t) {
  return last_start_at_most(token_starts, num_seqs, t);
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}
// Four 8x8 b16 matrices from shared memory (lane 4r + c gets row r, columns 2c and 2c + 1).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// Four 8x8 b16 matrices from shared memory, transposed (each lane gets a column pair).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

struct AttnArgs {
  PagedKvArgs kv;
  const bf16* q;
  bf16* out;
  float* part;  // [splits, T, hq, dv + 1] (o..., lse) when splits > 1
  int64_t tokens, hq;
  float scale_log2;
  int splits;
  int64_t window;      // > 0: each query sees its last `window` positions only
  const float* sinks;  // [hq] natural-log logits in every softmax's denominator, or null
  // Decode: the step's own K/V [T, hk, d|dv] (null: already in the cache). Keys at positions from
  // start_pos on are read from here, and the first split's block of each KV head stores them in the
  // cache: no separate write kernel.
  const bf16* new_k;
  const bf16* new_v;
  // Decode with the q/k norm and RoPE folded in (decode kernel only; null inv_freq: q and new_k
  // are final): q and new_k are the projections before them, which the kernel normalizes
  // (q_norm/k_norm over the head, eps; a null weight skips the norm) and rotates (NeoX over the
  // whole head, inv_freq, times rope_scaling) at the token's position, as qk_norm_rope would.
  const bf16* q_norm = nullptr;
  const bf16* k_norm = nullptr;
  const float* inv_freq = nullptr;
  float rope_scaling = 1.0f;
  float norm_eps = 0.0f;
};

// Where key `pos` of sequence `seq`, KV head `kvh` starts in K (or V, with `dim` = dv and the V
// pointers): the cache, or the step's new K/V.
__device__ __forceinline__ const bf16* key_row(const AttnArgs& a, const void* cache, const bf16* fresh, int64_t seq,
                                               int kvh, int64_t pos, int64_t start, int64_t t0, int64_t dim) {
  if (fresh != nullptr && pos >= start) return fresh + ((t0 + (pos - start)) * a.kv.hk + kvh) * dim;
  return static_cast<const bf16*>(cache) + (kv_slot(a.kv, seq, pos) * a.kv.hk + kvh) * dim;
}

// s += Q Kᵀ for 8 keys (rows key0..key0 + 7 of Ks, row stride LDS) of the 16-row Q fragments qf,
// two k-steps per ldmatrix: lanes 8i..8i+7 address keys key0 + (lane & 7) at dims ks·16 + 8i.
template <int KSTEPS, int LDS>
__device__ __forceinline__ void qk_ntile(float (&s)[4], const uint32_t (&qf)[KSTEPS][4], const bf16* Ks, int key0,
                                         int lane) {
  static_assert(KSTEPS % 2 == 0, "two k-steps a load");
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ks += 2) {
    uint32_t b[4];
    ldmatrix_x4(b, &Ks[(key0 + (lane & 7)) * LDS + ks * 16 + (lane >> 3) * 8]);
    mma_bf16(s, qf[ks], b[0], b[1]);
    mma_bf16(s, qf[ks + 1], b[2], b[3]);
  }
}

// The online softmax's running maximum of rows g and g + 8 (the thread's two rows of an m16 tile)
// after a tile whose own maxima are tile_max (per thread: reduced over the quad here); the sums
// are rescaled and alpha (the factor for the outputs) returned.
__device__ __forceinline__ void online_max(float (&tile_max)[2], float (&m)[2], float (&l)[2], float (&alpha)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
    tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
    const float m_new = fmaxf(m[h], tile_max[h]);
    alpha[h] = m_new == -INFINITY ? 1.0f : exp2f(m[h] - m_new);
    m[h] = m_new;
    l[h] *= alpha[h];
  }
}

// decode_attention.cu: whether its kernel takes a step (one new token a sequence, K and V of one
// head dim of 64 or 128, at most 16 query heads a KV head), and the launch (its split merge too).
bool decode_kernel_enabled();  // false under LOOM_DECODE_ATTENTION=general
bool decode_attention_applies(const AttnArgs& a, int64_t max_new_tokens);
void decode_attention(const AttnArgs& a, cudaStream_t s);

}  // namespace loom::kernels::cuda::attn
