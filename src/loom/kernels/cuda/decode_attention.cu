// Decode attention over the paged cache: one query token a sequence. A block takes one sequence,
// one KV head and one split of its keys; the KV head's GQA group of query heads (at most 16) is
// the 16 rows of one m16n8k16 tile, and its four warps split every 64-key tile (warp w: keys
// 16w..16w+15), their softmax states merged at the end. Keys stream through a two-stage cp.async
// pipeline (tile i + 1 in flight while tile i is multiplied), and the first tile's cached keys are
// requested before the kernel waits on the one before it (pdl.cuh): at batch 1 the cache read
// hides behind the q/k norm and RoPE.
//
// The general kernel (attention.cu) loaded each tile only once the last was consumed, with the
// page-table reads and the K/V reads one after the other, at 248 registers a thread: at batch 128
// it read the cache at about 1 TB/s (bench/NOTES.md).
#include "loom/kernels/cuda/attention_common.cuh"
#include "loom/kernels/cuda/norm_rope.cuh"
#include "loom/kernels/cuda/pdl.cuh"
#include "loom/tensor/env.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda::attn {
namespace {

constexpr int kKeys = 64, kWarps = 4, kThreads = 32 * kWarps, kStages = 2;

// Q, then [stage][K|V]; folding the q/k norm + RoPE adds the angles (2 x D/2 f32) and the rotated key.
template <int D, bool FOLD>
constexpr size_t smem_bytes() {
  return static_cast<size_t>(16 + kStages * 2 * kKeys) * (D + 8) * sizeof(bf16) +
         (FOLD ? D * sizeof(float) + D * sizeof(bf16) : 0);
}

// One head's RMSNorm (w null: none) and NeoX RoPE by one warp, as qk_norm_rope_kernel computes it
// (the same operations in the same order, through norm_rope.cuh): lane holds elements lane + 32j,
// whose rotation partner is element j ± D/64 of the same lane. Writes the bf16 result to dst
// (shared memory).
template <int D>
__device__ __forceinline__ void norm_rope_head(const bf16* src, const bf16* w, float eps, const float* cos_t,
                                               const float* sin_t, bf16* dst, int lane) {
  constexpr int J = D / 32, H = J / 2;
  float x[J];
  float ss = 0;
#pragma unroll
  for (int j = 0; j < J; ++j) {
    x[j] = to_f(src[lane + 32 * j]);
    ss = add_square(ss, x[j]);
  }
  if (w) {
    const float inv = rms_inverse(warp_sum(ss), D, eps);
#pragma unroll
    for (int j = 0; j < J; ++j) x[j] = rms_scaled(x[j], inv, w[lane + 32 * j]);
  }
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int c = lane + 32 * j, i = j < H ? c : c - D / 2;
    dst[c] = to_bf(rope_rotate(x[j], x[j < H ? j + H : j - H], cos_t[i], sin_t[i], j < H));
  }
}

template <int D, bool FOLD>
__global__ void __launch_bounds__(kThreads, 3) decode_attention_kernel(AttnArgs a, bool trigger_first) {
  constexpr int LDS = D + 8;  // bf16 a shared row (the pad spreads ldmatrix rows over the banks)
  constexpr int KSTEPS = D / 16, DTILES = D / 8, kRowChunks = D / 8;
  constexpr int kRowStep = kThreads / kRowChunks, kRowsPerThread = kKeys / kRowStep;
  static_assert(kKeys % kRowStep == 0, "a tile's chunks spread evenly over the threads");
  static_assert(kWarps * 16 * D * sizeof(float) <= kStages * 2 * kKeys * LDS * sizeof(bf16),
                "the warps' states merge through the stage bytes");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* stages = Qs + 16 * LDS;
  __shared__ float s_m[kWarps][16], s_l[kWarps][16];
  // Each key's row in the cache for a stage's tile, found once by one thread (a page-table read
  // and a division: found by every thread for every chunk, they cost more than the tile's MMAs).
  __shared__ int64_t row_of[kStages][kKeys];
  constexpr int64_t kPast = -1, kLater = -2, kFresh = -3;  // past the split; after the wait; key_row()
  // FOLD (a.inv_freq set): the angles at the token's position, and the new key normalized and
  // rotated (what the cache and every tile holding it get), after the stages.
  constexpr bool fold = FOLD;
  float* rope_cos = reinterpret_cast<float*>(stages + kStages * 2 * kKeys * LDS);
  float* rope_sin = rope_cos + D / 2;
  bf16* k_rot = reinterpret_cast<bf16*>(rope_sin + D / 2);

  const PagedKvArgs& kv = a.kv;
  const int group = static_cast<int>(a.hq / kv.hk);
  const int64_t seq = blockIdx.x / kv.hk;
  const int kvh = static_cast<int>(blockIdx.x % kv.hk);
  const int split = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;

  // The step's metadata was uploaded before it: readable before the wait (pdl.cuh).
  const int64_t t0 = kv.token_starts[seq];
  const bool has_query = kv.token_starts[seq + 1] > t0;
  const int64_t start = kv.start_pos[seq];  // the query's position: keys [key_lo, start]
  const int64_t key_lo = a.window > 0 ? max(int64_t(0), start - a.window + 1) : 0;
  const int64_t chunk = ((start + 1 - key_lo + a.splits - 1) / a.splits + kKeys - 1) / kKeys * kKeys;
  const int64_t key_begin = key_lo + split * chunk, key_end = has_query ? imin64(start + 1, key_begin + chunk) : 0;
  const int ntiles = key_end > key_begin ? static_cast<int>((key_end - key_begin + kKeys - 1) / kKeys) : 0;
  if constexpr (fold)  // from the uploaded position: before the wait (pdl.cuh)
    for (int i = threadIdx.x; i < D / 2; i += kThreads)
      rope_cos_sin(static_cast<float>(start), a.inv_freq[i], a.rope_scaling, rope_cos[i], rope_sin[i]);

  // Tile i into stage i % kStages: the keys' rows first (thread r < kKeys: key r), then this
  // thread's rows tid / kRowChunks + kRowStep·j at column (tid % kRowChunks)·8, zeros past the
  // split. `cached_only`: only keys before the new one (an earlier kernel may still be writing the
  // step's own K/V; that row is requested after the wait).
  const int col = (tid % kRowChunks) * 8, row0 = tid / kRowChunks;
  const int ps = static_cast<int>(kv.page_size);
  const int32_t* pages = kv.page_table + seq * kv.max_pages;
  auto find_rows = [&](int i, bool cached_only) {
    if (tid >= kKeys) return;
    const int64_t pos = key_begin + static_cast<int64_t>(i) * kKeys + tid;
    int64_t row = kPast;
    if (pos < key_end && pos >= start) row = cached_only ? kLater : kFresh;
    else if (pos < key_end) {
      const int p = static_cast<int>(pos);  // positions fit in 32 bits: a 32-bit division
      row = (static_cast<int64_t>(pages[p / ps]) * ps + p % ps) * kv.hk + kvh;
    }
    row_of[i % kStages][tid] = row;
  };
  auto issue = [&](int i) {
    bf16* ks = stages + (i % kStages) * 2 * kKeys * LDS;
    bf16* vs = ks + kKeys * LDS;
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) {
      const int r = row0 + kRowStep * j;
      const int64_t row = row_of[i % kStages][r];
      if (row >= 0) {
        cp_async16(ks + r * LDS + col, static_cast<const bf16*>(kv.k_cache) + row * D + col, true);
        cp_async16(vs + r * LDS + col, static_cast<const bf16*>(kv.v_cache) + row * D + col, true);
      } else if (row == kPast) {
        cp_async16(ks + r * LDS + col, kv.k_cache, false);
        cp_async16(vs + r * LDS + col, kv.v_cache, false);
      } else if (row == kFresh) {
        const int64_t pos = key_begin + static_cast<int64_t>(i) * kKeys + r;
        if constexpr (fold) *reinterpret_cast<uint4*>(ks + r * LDS + col) = *reinterpret_cast<const uint4*>(k_rot + col);
        else cp_async16(ks + r * LDS + col, key_row(a, kv.k_cache, a.new_k, seq, kvh, pos, start, t0, D) + col, true);
        cp_async16(vs + r * LDS + col, key_row(a, kv.v_cache, a.new_v, seq, kvh, pos, start, t0, D) + col, true);
      }
    }
  };
  if (ntiles > 0) {
    find_rows(0, true);
    __syncthreads();
    issue(0);
  }
  cp_async_commit();

  wait_and_allow_dependents(trigger_first);  // q (and the step's K/V) come from the kernels before
  if (!has_query) return;
  if constexpr (fold) {
    __syncthreads();  // the angles (a block without keys has had no barrier since)
    // Q row r < group (query head kvh·group + r) by warp r % kWarps, the rest zeros; the new key by
    // the last warp (its rows past a group of 8 are padding).
    for (int r = warp; r < 16; r += kWarps) {
      if (r < group)
        norm_rope_head<D>(a.q + (t0 * a.hq + kvh * group + r) * D, a.q_norm, a.norm_eps, rope_cos, rope_sin,
                          Qs + r * LDS, lane);
      else
        for (int c = lane; c < D; c += 32) Qs[r * LDS + c] = to_bf(0.0f);
    }
    if (warp == kWarps - 1)
      norm_rope_head<D>(a.new_k + (t0 * kv.hk + kvh) * D, a.k_norm, a.norm_eps, rope_cos, rope_sin, k_rot, lane);
    __syncthreads();
  }
  if (ntiles > 0 && start - key_begin < kKeys) {  // the new key is in the first tile: its row now
    const int r = static_cast<int>(start - key_begin);
    if (row0 == r % kRowStep) {  // this thread's rows include r
      if constexpr (fold) *reinterpret_cast<uint4*>(stages + r * LDS + col) = *reinterpret_cast<const uint4*>(k_rot + col);
      else cp_async16(stages + r * LDS + col, key_row(a, kv.k_cache, a.new_k, seq, kvh, start, start, t0, D) + col, true);
      cp_async16(stages + (kKeys + r) * LDS + col, key_row(a, kv.v_cache, a.new_v, seq, kvh, start, start, t0, D) + col,
                 true);
    }
  }
  cp_async_commit();
  if (ntiles > 1) {
    find_rows(1, false);
    __syncthreads();
    issue(1);
  }
  cp_async_commit();
  if (a.new_k && split == 0 && tid < 2 * kRowChunks) {  // the step's K/V of this head into the cache
    const bool is_k = tid < kRowChunks;
    const int c = (tid % kRowChunks) * 8;
    const int64_t dst = (kv_slot(kv, seq, start) * kv.hk + kvh) * D + c, src = (t0 * kv.hk + kvh) * D + c;
    bf16* cache = static_cast<bf16*>(is_k ? kv.k_cache : kv.v_cache);
    if constexpr (fold)
      *reinterpret_cast<uint4*>(cache + dst) = *reinterpret_cast<const uint4*>(is_k ? k_rot + c : a.new_v + src);
    else
      *reinterpret_cast<uint4*>(cache + dst) = *reinterpret_cast<const uint4*>((is_k ? a.new_k : a.new_v) + src);
  }
  // Q: row r < group is query head kvh·group + r of the token; the rest zeros (folded: done above).
  for (int c = tid; c < (fold ? 0 : 16 * kRowChunks); c += kThreads) {
    const int r = c / kRowChunks, dc = (c % kRowChunks) * 8;
    *reinterpret_cast<uint4*>(&Qs[r * LDS + dc]) =
        r < group ? *reinterpret_cast<const uint4*>(a.q + (t0 * a.hq + kvh * group + r) * D + dc) : make_uint4(0, 0, 0, 0);
  }
  __syncthreads();
  uint32_t qf[KSTEPS][4];
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ++ks) {
    qf[ks][0] = *reinterpret_cast<const uint32_t*>(&Qs[g * LDS + ks * 16 + 2 * tq]);
    qf[ks][1] = *reinterpret_cast<const uint32_t*>(&Qs[(g + 8) * LDS + ks * 16 + 2 * tq]);
    qf[ks][2] = *reinterpret_cast<const uint32_t*>(&Qs[g * LDS + ks * 16 + 2 * tq + 8]);
    qf[ks][3] = *reinterpret_cast<const uint32_t*>(&Qs[(g + 8) * LDS + ks * 16 + 2 * tq + 8]);
  }

  float o[DTILES][4];
#pragma unroll
  for (int i = 0; i < DTILES; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int kofs = 16 * warp;  // this warp's keys within a tile

  for (int i = 0; i < ntiles; ++i) {
    if (i + 1 < ntiles) cp_async_wait<1>();  // all but tile i + 1's group
    else cp_async_wait<0>();
    __syncthreads();
    const bf16* Ks = stages + (i % kStages) * 2 * kKeys * LDS;
    const bf16* Vs = Ks + kKeys * LDS;
    const int64_t kb = key_begin + static_cast<int64_t>(i) * kKeys;
    // S = Q Kᵀ: 16 rows x this warp's 16 keys (two n-tiles of 8).
    float s[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      qk_ntile<KSTEPS, LDS>(s[nt], qf, Ks, kofs + nt * 8, lane);
    }
    // Mask past the split, scale into the log2 domain, online softmax (rows g and g + 8).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool ok = kb + kofs + nt * 8 + 2 * tq + (e & 1) < key_end;
        s[nt][e] = ok ? s[nt][e] * a.scale_log2 : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
      }
    float alpha[2];
    online_max(tile_max, m, l, alpha);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1;
        const float p = m[h] == -INFINITY ? 0.0f : exp2f(s[nt][e] - m[h]);
        s[nt][e] = p;
        l[h] += p;
      }
    // O = O·alpha + P V: the S accumulators are the A fragment of P (16 keys = one k-step).
    const uint32_t pa[4] = {pack_bf16(s[0][0], s[0][1]), pack_bf16(s[0][2], s[0][3]), pack_bf16(s[1][0], s[1][1]),
                            pack_bf16(s[1][2], s[1][3])};
#pragma unroll
    for (int dt = 0; dt < DTILES; dt += 2) {
      o[dt][0] *= alpha[0], o[dt][1] *= alpha[0], o[dt][2] *= alpha[1], o[dt][3] *= alpha[1];
      o[dt + 1][0] *= alpha[0], o[dt + 1][1] *= alpha[0], o[dt + 1][2] *= alpha[1], o[dt + 1][3] *= alpha[1];
      uint32_t b[4];
      ldmatrix_x4_trans(b, &Vs[(kofs + (lane & 15)) * LDS + (dt + (lane >> 4)) * 8]);
      mma_bf16(o[dt], pa, b[0], b[1]);
      mma_bf16(o[dt + 1], pa, b[2], b[3]);
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
    if (i + 2 < ntiles) {
      find_rows(i + 2, false);
      __syncthreads();
      issue(i + 2);
    }
    cp_async_commit();
  }

  // The four warps' states through shared memory (the stage bytes are free now), then every
  // thread writes a share of the group's rows: rescaled to the rows' common maximum and summed.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
  cp_async_wait<0>();
  __syncthreads();
  float* buf = reinterpret_cast<float*>(stages);  // [kWarps][16][D]
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = g + 8 * h;
    if (tq == 0) s_m[warp][row] = m[h], s_l[warp][row] = l[h];
#pragma unroll
    for (int dt = 0; dt < DTILES; ++dt)
      *reinterpret_cast<float2*>(&buf[(warp * 16 + row) * D + dt * 8 + 2 * tq]) = make_float2(o[dt][2 * h], o[dt][2 * h + 1]);
  }
  __syncthreads();
  for (int idx = tid; idx < group * D; idx += kThreads) {
    const int row = idx / D, c = idx % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_m[w][row]);
    float sum = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float scale = s_m[w][row] == -INFINITY ? 0.0f : exp2f(s_m[w][row] - mx);
      sum += scale * s_l[w][row];
      acc += scale * buf[(w * 16 + row) * D + c];
    }
    const int64_t head = kvh * group + row;
    if (a.splits == 1) {
      // A sink joins the denominator once: here without splits, in the merge with them.
      const float sink = a.sinks && mx != -INFINITY ? exp2f(a.sinks[head] * 1.4426950408889634f - mx) : 0.0f;
      const float inv = sum + sink > 0 ? 1.0f / (sum + sink) : 0.0f;
      a.out[(t0 * a.hq + head) * D + c] = to_bf(acc * inv);
    } else {
      float* dst = a.part + ((static_cast<int64_t>(split) * a.tokens + t0) * a.hq + head) * (D + 1);
      dst[c] = sum > 0 ? acc / sum : 0.0f;
      if (c == 0) dst[D] = sum > 0 ? mx + log2f(sum) : -INFINITY;  // log2-sum-exp of the split
    }
  }
}

template <int D, bool FOLD>
void launch(const AttnArgs& a, cudaStream_t s) {
  constexpr size_t smem = smem_bytes<D, FOLD>();
  allow_dynamic_smem(reinterpret_cast<const void*>(decode_attention_kernel<D, FOLD>), smem);
  const dim3 grid(static_cast<unsigned>(a.kv.num_seqs * a.kv.hk), static_cast<unsigned>(a.splits));
  for (int i = 0; i < launches_of("attention"); ++i)
    launch_pdl(decode_attention_kernel<D, FOLD>, grid, kThreads, smem, s, a, pdl_trigger_first());
}

}  // namespace

bool decode_kernel_enabled() {
  // LOOM_DECODE_ATTENTION=general keeps decode on attention.cu's kernel (A/B runs).
  static const bool general = env_is("LOOM_DECODE_ATTENTION", "general");
  return !general;
}

bool decode_attention_applies(const AttnArgs& a, int64_t max_new_tokens) {
  if (!decode_kernel_enabled()) return false;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return max_new_tokens == 1 && v_dim(a.kv) == a.kv.d && (a.kv.d == 64 || a.kv.d == 128) && a.hq % a.kv.hk == 0 &&
         a.hq / a.kv.hk <= 16 && a.splits >= 1 && aligned(a.q) && aligned(a.kv.k_cache) && aligned(a.kv.v_cache) &&
         (!a.new_k || (aligned(a.new_k) && aligned(a.new_v)));
}

void decode_attention(const AttnArgs& a, cudaStream_t s) {
  LOOM_CHECK(decode_attention_applies(a, 1), "decode_attention: head dim ", a.kv.d, ", ", a.hq, " query heads over ",
             a.kv.hk, " KV heads");
  const bool fold = a.inv_freq != nullptr;
  if (a.kv.d == 64) fold ? launch<64, true>(a, s) : launch<64, false>(a, s);
  else fold ? launch<128, true>(a, s) : launch<128, false>(a, s);
}

}  // namespace loom::kernels::cuda::attn
