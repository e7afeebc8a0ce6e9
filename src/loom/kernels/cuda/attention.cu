// Paged attention: the KV write, and one flash-style kernel for prefill and decode. A block takes
// 64 "rows" = (query token, query head) pairs of one sequence and one KV head (GQA: the heads
// sharing a KV head share every K/V tile), walks the keys in tiles of 64 with an online softmax
// in registers, and multiplies on the tensor cores with mma.sync m16n8k16 (bf16 in, f32 accum).
// Decode (few rows, many keys) splits the keys over blocks; a second kernel merges the partials.
#include <algorithm>
#include <cmath>

#include "loom/kernels/cuda/attention_common.cuh"
#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/pdl.cuh"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

using namespace attn;

constexpr int kRows = 64, kKeys = 64, kWarps = 4;

__global__ void write_kv_kernel(PagedKvArgs kv, const bf16* k, const bf16* v, const int32_t* positions,
                                int64_t tokens) {
  const int64_t t = blockIdx.x;
  const int s = seq_of_token(kv.token_starts, kv.num_seqs, t);
  const int64_t slot = kv_slot(kv, s, positions[t]);
  const int64_t nk = kv.hk * kv.d, nv = kv.hk * v_dim(kv);
  bf16* kc = static_cast<bf16*>(kv.k_cache) + slot * nk;
  bf16* vc = static_cast<bf16*>(kv.v_cache) + slot * nv;
  for (int64_t c = threadIdx.x; c < nk; c += blockDim.x) kc[c] = k[t * nk + c];
  if (v)  // null: no V cache (latent attention reading the value from the key)
    for (int64_t c = threadIdx.x; c < nv; c += blockDim.x) vc[c] = v[t * nv + c];
}

// A key tile of rows[r] (null: past the keys, zeros) into shared memory at row stride LD, columns
// past `dim` zero: every 16-byte chunk of the thread loaded before any is stored.
template <int DP, int LD>
__device__ __forceinline__ void load_tile(const bf16* const* rows, int dim, bf16* dst, int tid) {
  constexpr int kChunksPerRow = DP / 8, kChunks = kKeys * kChunksPerRow / (kWarps * 32);
  static_assert(kKeys * kChunksPerRow % (kWarps * 32) == 0, "tile chunks spread evenly over the threads");
  uint4 v[kChunks];
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int c = tid + i * kWarps * 32, r = c / kChunksPerRow, dc = (c % kChunksPerRow) * 8;
    v[i] = rows[r] != nullptr && dc < dim ? *reinterpret_cast<const uint4*>(rows[r] + dc) : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int c = tid + i * kWarps * 32, r = c / kChunksPerRow, dc = (c % kChunksPerRow) * 8;
    *reinterpret_cast<uint4*>(&dst[r * LD + dc]) = v[i];
  }
}

// The four warps' (m, l, o) of the same 16 rows (key-split decode) into warp 0's registers: each
// warp's state rescaled to the rows' common maximum and summed. `buf` holds [kWarps][16][DPV] f32
// (the K/V tiles' bytes, consumed by then).
template <int DPV>
__device__ __forceinline__ void merge_key_split(float* buf, float (&o)[DPV / 8][4], float (&m)[2], float (&l)[2],
                                                int warp, int g, int tq) {
  __shared__ float s_m[kWarps][16], s_l[kWarps][16];
  __syncthreads();  // every warp is done with the K/V tiles
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = g + 8 * h;
    if (tq == 0) s_m[warp][row] = m[h], s_l[warp][row] = l[h];
#pragma unroll
    for (int dt = 0; dt < DPV / 8; ++dt) {
      float* dst = buf + (warp * 16 + row) * DPV + dt * 8 + 2 * tq;
      dst[0] = o[dt][2 * h], dst[1] = o[dt][2 * h + 1];
    }
  }
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = g + 8 * h;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_m[w][row]);
    float scale[kWarps], sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      scale[w] = s_m[w][row] == -INFINITY ? 0.0f : exp2f(s_m[w][row] - mx);
      sum += scale[w] * s_l[w][row];
    }
    m[h] = mx;
    l[h] = sum;
#pragma unroll
    for (int dt = 0; dt < DPV / 8; ++dt)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        float acc = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) acc += scale[w] * buf[(w * 16 + row) * DPV + dt * 8 + 2 * tq + c];
        o[dt][2 * h + c] = acc;
      }
  }
}

// DP / DPV: K's and V's head dims rounded up to 16 (the padding is zero in Q, K and V, and never
// written out). They differ for latent attention (DeepSeek's key [k_pe | c], value c).
template <int DP, int DPV>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(AttnArgs a) {
  constexpr int LDS = DP + 8, LDSV = DPV + 8;  // bf16 elements per shared row (pad: fewer bank conflicts)
  constexpr int KSTEPS = DP / 16, DTILES = DPV / 8;
  // Q passes through Ks on its way to registers (static shared memory stays under 48 KB); the
  // decode warps' states are merged through the same bytes (merge_key_split).
  __shared__ __align__(16) bf16 KVs[kKeys * LDS + kKeys * LDSV];
  bf16* Ks = KVs;
  bf16* Vs = KVs + kKeys * LDS;
  static_assert(sizeof(KVs) >= kWarps * 16 * DPV * sizeof(float), "the decode merge fits in the tiles' bytes");
  __shared__ const bf16* k_rows[kKeys];
  __shared__ const bf16* v_rows[kKeys];
  bf16* Qs = Ks;
  static_assert(kRows == kKeys, "Q tile staged in the K buffer");

  const PagedKvArgs& kv = a.kv;
  const int d = static_cast<int>(kv.d), dv = static_cast<int>(v_dim(kv));
  const int group = static_cast<int>(a.hq / kv.hk);
  const int64_t seq = blockIdx.y / kv.hk;
  const int kvh = static_cast<int>(blockIdx.y % kv.hk);
  const int split = blockIdx.z;
  const int64_t t0 = kv.token_starts[seq];
  const int64_t n_new = kv.token_starts[seq + 1] - t0;
  const int64_t start = kv.start_pos[seq];
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  if (row0 >= n_new * group) return;  // this sequence has fewer rows than the grid allows
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  if (a.new_k && blockIdx.x == 0 && split == 0) {  // the step's K/V of this head into the cache
    for (int64_t i = 0; i < n_new; ++i) {
      const int64_t slot = kv_slot(kv, seq, start + i), src = (t0 + i) * kv.hk + kvh, dst = slot * kv.hk + kvh;
      for (int c = tid; c < d; c += blockDim.x)
        static_cast<bf16*>(kv.k_cache)[dst * d + c] = a.new_k[src * d + c];
      for (int c = tid; c < dv; c += blockDim.x)
        static_cast<bf16*>(kv.v_cache)[dst * dv + c] = a.new_v[src * dv + c];
    }
  }

  // Keys this block needs: from the window's start of its first query (0 without a window) up to
  // the causal limit of its last query, then this split's share.
  const int64_t last_q = imin64(n_new - 1, (row0 + kRows - 1) / group);
  const int64_t kv_len = start + last_q + 1;
  const int64_t key_lo = a.window > 0 ? max(int64_t(0), start + row0 / group - a.window + 1) : 0;
  const int64_t chunk = ((kv_len - key_lo + a.splits - 1) / a.splits + kKeys - 1) / kKeys * kKeys;
  const int64_t key_begin = key_lo + split * chunk, key_end = imin64(kv_len, key_begin + chunk);

  // Q tile: row r -> (query qi = r / group, head kvh * group + r % group); past the queries, zeros.
  for (int r = tid; r < kRows; r += blockDim.x) {
    const int64_t row = row0 + r, qi = row / group;
    k_rows[r] = qi < n_new ? a.q + ((t0 + qi) * a.hq + kvh * group + row % group) * d : nullptr;
  }
  __syncthreads();
  load_tile<DP, LDS>(k_rows, d, Qs, tid);
  __syncthreads();
  // Decode: when a block's real rows fit in one 16-row MMA tile (one token's GQA group), the four
  // warps split every key tile instead of the rows: warp w takes keys [16w, 16w + 16) of each tile
  // over the same 16 rows, and their softmax states are merged at the end. (Splitting rows left
  // three warps idle on padding and the GPU's attention at 0.8 TB/s at batch 128.)
  const bool split_keys = n_new * group <= 16;  // then row0 == 0
  const int wr = split_keys ? 0 : warp * 16;
  const int kofs = split_keys ? 16 * warp : 0;     // this warp's keys within a tile
  const int ntiles = split_keys ? 2 : kKeys / 8;   // ... as 8-key n-tiles
  uint32_t qf[KSTEPS][4];
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ++ks) {
    qf[ks][0] = *reinterpret_cast<const uint32_t*>(&Qs[(wr + g) * LDS + ks * 16 + 2 * tq]);
    qf[ks][1] = *reinterpret_cast<const uint32_t*>(&Qs[(wr + g + 8) * LDS + ks * 16 + 2 * tq]);
    qf[ks][2] = *reinterpret_cast<const uint32_t*>(&Qs[(wr + g) * LDS + ks * 16 + 2 * tq + 8]);
    qf[ks][3] = *reinterpret_cast<const uint32_t*>(&Qs[(wr + g + 8) * LDS + ks * 16 + 2 * tq + 8]);
  }
  // Causal limit of this thread's two rows (-1: padding row, sees nothing) and the window's start.
  int64_t limit[2], lower[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = row0 + wr + g + 8 * h, qi = row / group;
    limit[h] = qi < n_new ? start + qi : -1;
    lower[h] = a.window > 0 ? limit[h] - a.window + 1 : 0;
  }

  const bool active = row0 + wr < n_new * group;
  float o[DTILES][4];
#pragma unroll
  for (int i = 0; i < DTILES; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int64_t kb = key_begin; kb < key_end; kb += kKeys) {
    __syncthreads();  // the previous tile is consumed
    // Each key's K and V row addresses first (one page-table read per key), then every chunk of the
    // tile loaded at once (kChunks 16-byte loads in flight per thread), then stored: the loads of a
    // tile wait on memory once, not once per chunk.
    for (int r = tid; r < kKeys; r += blockDim.x) {
      const int64_t pos = kb + r;
      const bool valid = pos < key_end;
      k_rows[r] = valid ? key_row(a, kv.k_cache, a.new_k, seq, kvh, pos, start, t0, d) : nullptr;
      v_rows[r] = valid ? key_row(a, kv.v_cache, a.new_v, seq, kvh, pos, start, t0, dv) : nullptr;
    }
    __syncthreads();
    load_tile<DP, LDS>(k_rows, d, Ks, tid);
    load_tile<DPV, LDSV>(v_rows, dv, Vs, tid);
    __syncthreads();
    // A warp whose 16 rows are all past the queries (a decode tile holds one GQA group: 8 rows)
    // only helps load; its tensor-core work would be thrown away.
    if (!active) continue;

    // S = Q Kᵀ for this warp's 16 rows x 64 keys: 8 n-tiles of 8 keys.
    float s[kKeys / 8][4];
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      if (nt >= ntiles) break;
      if constexpr (KSTEPS % 2 == 0) {
        qk_ntile<KSTEPS, LDS>(s[nt], qf, Ks, kofs + nt * 8, lane);
      } else {
#pragma unroll
        for (int ks = 0; ks < KSTEPS; ++ks) {
          const int key = kofs + nt * 8 + g;
          const uint32_t b0 = *reinterpret_cast<const uint32_t*>(&Ks[key * LDS + ks * 16 + 2 * tq]);
          const uint32_t b1 = *reinterpret_cast<const uint32_t*>(&Ks[key * LDS + ks * 16 + 2 * tq + 8]);
          mma_bf16(s[nt], qf[ks], b0, b1);
        }
      }
    }
    // Mask, scale into the log2 domain, running max.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (nt >= ntiles) break;
        const int h = i >> 1;
        const int64_t key = kb + kofs + nt * 8 + 2 * tq + (i & 1);
        const bool ok = key < key_end && key <= limit[h] && key >= lower[h];
        s[nt][i] = ok ? s[nt][i] * a.scale_log2 : -INFINITY;
        tile_max[h] = fmaxf(tile_max[h], s[nt][i]);
      }
    float alpha[2];
    online_max(tile_max, m, l, alpha);
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (nt >= ntiles) break;
        const int h = i >> 1;
        const float p = m[h] == -INFINITY ? 0.0f : exp2f(s[nt][i] - m[h]);
        s[nt][i] = p;
        l[h] += p;
      }
#pragma unroll
    for (int dt = 0; dt < DTILES; ++dt) {
      o[dt][0] *= alpha[0], o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1], o[dt][3] *= alpha[1];
    }
    // O += P V: the S accumulators are exactly the A fragments of P (two n-tiles per k-step).
#pragma unroll
    for (int j = 0; j < kKeys / 16; ++j) {
      if (2 * j >= ntiles) break;
      const uint32_t pa[4] = {pack_bf16(s[2 * j][0], s[2 * j][1]), pack_bf16(s[2 * j][2], s[2 * j][3]),
                              pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]),
                              pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3])};
      // V fragments by transposing loads: lanes 0-15 address keys j*16 + (lane & 15) of dim tile
      // dt, lanes 16-31 the same keys of tile dt + 1.
#pragma unroll
      for (int dt = 0; dt < DTILES; dt += 2) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, &Vs[(kofs + j * 16 + (lane & 15)) * LDSV + (dt + (lane >> 4)) * 8]);
        mma_bf16(o[dt], pa, b[0], b[1]);
        mma_bf16(o[dt + 1], pa, b[2], b[3]);
      }
    }
  }

  // Finish: row sums across the quad, the decode warps' states merged into warp 0, normalise, write.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
  if (split_keys) {
    merge_key_split<DPV>(reinterpret_cast<float*>(KVs), o, m, l, warp, g, tq);
    if (warp != 0) return;
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = row0 + wr + g + 8 * h, qi = row / group;
    if (qi >= n_new) continue;
    const int64_t t = t0 + qi, head = kvh * group + row % group;
    // A sink joins the denominator once: here without splits, in the merge with them.
    const float sink = a.sinks && a.splits == 1 && m[h] != -INFINITY
                           ? exp2f(a.sinks[head] * 1.4426950408889634f - m[h]) : 0.0f;
    const float inv = l[h] + sink > 0 ? 1.0f / (l[h] + sink) : 0.0f;
    if (a.splits == 1) {
      bf16* dst = a.out + (t * a.hq + head) * dv;
#pragma unroll
      for (int dt = 0; dt < DTILES; ++dt) {
        const int col = dt * 8 + 2 * tq;
        if (col < dv) *reinterpret_cast<__nv_bfloat162*>(dst + col) =
            __floats2bfloat162_rn(o[dt][2 * h] * inv, o[dt][2 * h + 1] * inv);
      }
    } else {
      float* dst = a.part + ((static_cast<int64_t>(split) * a.tokens + t) * a.hq + head) * (dv + 1);
#pragma unroll
      for (int dt = 0; dt < DTILES; ++dt) {
        const int col = dt * 8 + 2 * tq;
        if (col < dv) dst[col] = o[dt][2 * h] * inv, dst[col + 1] = o[dt][2 * h + 1] * inv;
      }
      if (tq == 0) dst[dv] = l[h] > 0 ? m[h] + log2f(l[h]) : -INFINITY;  // log2-sum-exp of the split
    }
  }
}

// Merges split partials: one block per (token, head), a thread per column. The first warp reads
// the splits' log-sum-exps at once (lane s: split s) and shares their weights; every thread then
// requests all of its column's live partials before adding any (in split order). Loops over the
// splits with loads feeding each add cost one L2 round trip per 8 splits, twice (4.5 µs at 32
// splits in a bs-1 decode step: bench/NOTES.md).
constexpr int kMaxMergeSplits = 32;
// S: a bound on the splits (registers grow with it: 120 a thread at 32, which at batch 128's
// 4,096 blocks of 3 splits left 4 blocks an SM and took 21 µs a layer).
template <int S>
__global__ void __launch_bounds__(128) merge_splits_kernel(const float* part, bf16* out, int64_t tokens, int64_t hq,
                                                           int d, int splits, const float* sinks,
                                                           bool trigger_first) {
  __shared__ float weight[S];
  __shared__ float denom;
  wait_and_allow_dependents(trigger_first);
  const int64_t th = blockIdx.x;  // t * hq + head
  const int64_t stride = tokens * hq * (d + 1);
  const float* base = part + th * (d + 1);
  if (threadIdx.x < 32) {
    const int s = threadIdx.x;
    const float lse = s < splits ? base[s * stride + d] : -INFINITY;
    const float mx = warp_max(lse);
    const float w = lse == -INFINITY ? 0.0f : exp2f(lse - mx);
    if (s < S) weight[s] = w;
    const float sum = warp_sum(w);
    const float sink = sinks && mx != -INFINITY ? exp2f(sinks[th % hq] * 1.4426950408889634f - mx) : 0.0f;
    if (s == 0) denom = sum > 0 ? sum + sink : 0.0f;
  }
  __syncthreads();
  const float inv = denom > 0 ? 1.0f / denom : 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float v[S];
#pragma unroll
    for (int s = 0; s < S; ++s) v[s] = s < splits && weight[s] > 0 ? base[s * stride + c] : 0.0f;
    float acc = 0;
#pragma unroll
    for (int s = 0; s < S; ++s) acc += weight[s] * v[s];
    out[th * d + c] = to_bf(acc * inv);
  }
}

void merge_splits(const float* part, bf16* out, int64_t tokens, int64_t hq, int d, int splits, const float* sinks,
                  cudaStream_t s) {
  auto* kernel = splits <= 4    ? merge_splits_kernel<4>
                 : splits <= 8  ? merge_splits_kernel<8>
                 : splits <= 16 ? merge_splits_kernel<16>
                                : merge_splits_kernel<kMaxMergeSplits>;
  for (int i = 0; i < launches_of("merge"); ++i)
    launch_pdl(kernel, static_cast<unsigned>(tokens * hq), 128, 0, s, part, out, tokens, hq, d, splits, sinks,
               pdl_trigger_first());
}

template <int DP, int DPV>
void launch_attention(const AttnArgs& a, int64_t row_tiles, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(a.kv.num_seqs * a.kv.hk),
                  static_cast<unsigned>(a.splits));
  attention_kernel<DP, DPV><<<grid, kWarps * 32, 0, s>>>(a);
  CUDA_CHECK_LAUNCH("attention");
}

// V's head dim is K's, or fits in half of K's padded size (latent attention's value is a part of
// its key): two instantiations per K size.
template <int DP>
void launch_attention_dv(const AttnArgs& a, int64_t row_tiles, cudaStream_t s) {
  if (v_dim(a.kv) == a.kv.d) return launch_attention<DP, DP>(a, row_tiles, s);
  if constexpr (DP >= 32) {
    if (v_dim(a.kv) <= DP / 2) return launch_attention<DP, DP / 2>(a, row_tiles, s);
  }
  LOOM_CHECK(false, "attention: V head dim ", v_dim(a.kv), " must equal K's (", a.kv.d, ") or be at most ", DP / 2);
}

}  // namespace

void write_kv(const PagedKvArgs& kv, const void* k, const void* v, const int32_t* positions, int64_t tokens,
              cudaStream_t s) {
  if (tokens == 0) return;
  write_kv_kernel<<<static_cast<unsigned>(tokens), 128, 0, s>>>(kv, static_cast<const bf16*>(k),
                                                               static_cast<const bf16*>(v), positions, tokens);
  CUDA_CHECK_LAUNCH("write_kv");
}

int attention_splits(int64_t num_seqs, int64_t hk, bool decode_only) {
  if (!decode_only) return 1;
  // Independent of the sequences' lengths (blocks share out the actual keys on the device), so a
  // captured graph and an eager step of the same batch size compute identically. At least two
  // blocks an SM, and whole waves: the decode kernel holds 3 blocks an SM, and 512 blocks (batch
  // 128 x 4 KV heads) in 396 places left the second wave 30% full; 3 splits make 3.9 waves.
  const int sms = sm_count();
  const int64_t heads = std::max<int64_t>(1, num_seqs * hk), places = 3 * int64_t{sms};
  const int first = static_cast<int>(std::clamp<int64_t>((2 * sms + heads - 1) / heads, 1, 32));
  for (int splits = first; splits <= 32; ++splits) {
    const double waves = static_cast<double>(splits * heads) / static_cast<double>(places);
    if (waves < 1.0 || waves / std::ceil(waves) >= 0.9) return splits;
  }
  return first;
}

bool attention_fuses_qk_norm_rope(int64_t hq, int64_t hk, int64_t d, int64_t dv, int64_t rotary_dim) {
  return decode_kernel_enabled() && (d == 64 || d == 128) && dv == d && rotary_dim == d && hk > 0 && hq % hk == 0 &&
         hq / hk <= 16;
}

void attention(const PagedKvArgs& kv, const void* q, void* out, int64_t tokens, int64_t hq, float scale,
               int64_t max_new_tokens, int num_splits, float* workspace, cudaStream_t s, int64_t sliding_window,
               const float* sinks, const void* new_k, const void* new_v, const QkNormRope* qk) {
  if (tokens == 0) return;
  LOOM_CHECK(kv.d % 8 == 0 && kv.d <= 128 && v_dim(kv) % 8 == 0 && v_dim(kv) <= kv.d, "attention: head dims ",
             kv.d, " (K) and ", v_dim(kv), " (V) must be multiples of 8, V's at most K's, K's at most 128");
  LOOM_CHECK(hq % kv.hk == 0, "attention: ", hq, " query heads over ", kv.hk, " kv heads");
  LOOM_CHECK(num_splits == 1 || workspace, "attention: split keys need a workspace");
  LOOM_CHECK(num_splits >= 1 && num_splits <= kMaxMergeSplits, "attention: ", num_splits, " splits of the keys (1..",
             kMaxMergeSplits, ")");
  const int64_t group = hq / kv.hk;
  const int64_t row_tiles = (max_new_tokens * group + kRows - 1) / kRows;
  LOOM_CHECK((new_k == nullptr) == (new_v == nullptr) && (!new_k || max_new_tokens == 1),
             "attention: the step's k and v come together, for decode steps only");
  AttnArgs a{kv,         static_cast<const bf16*>(q), static_cast<bf16*>(out), workspace, tokens, hq,
             scale * 1.4426950408889634f, num_splits, sliding_window, sinks,
             static_cast<const bf16*>(new_k), static_cast<const bf16*>(new_v)};
  const int64_t dp = (kv.d + 15) / 16 * 16;
  if (qk) {
    LOOM_CHECK(new_k && qk->inv_freq && decode_attention_applies(a, max_new_tokens) &&
                   attention_fuses_qk_norm_rope(hq, kv.hk, kv.d, v_dim(kv), kv.d),
               "attention: the q/k norm and RoPE fold into decode steps of the decode kernel only (head dim ", kv.d,
               ", ", hq, " query heads over ", kv.hk, ")");
    a.q_norm = static_cast<const bf16*>(qk->q_norm);
    a.k_norm = static_cast<const bf16*>(qk->k_norm);
    a.inv_freq = qk->inv_freq;
    a.rope_scaling = qk->scaling;
    a.norm_eps = qk->eps;
  }
  if (decode_attention_applies(a, max_new_tokens)) decode_attention(a, s);
  else if (dp <= 16) launch_attention_dv<16>(a, row_tiles, s);
  else if (dp <= 32) launch_attention_dv<32>(a, row_tiles, s);
  else if (dp <= 64) launch_attention_dv<64>(a, row_tiles, s);
  else launch_attention_dv<128>(a, row_tiles, s);
  if (num_splits > 1) {
    merge_splits(workspace, static_cast<bf16*>(out), tokens, hq, static_cast<int>(v_dim(kv)), num_splits, sinks, s);
  }
}

}  // namespace loom::kernels::cuda
