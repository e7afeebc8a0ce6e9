// Per-request token sampling over a step's bf16 logits, a block or a cluster a row, with the host
// sampler's semantics (engine/sampler.cc) so that a seeded request draws the same token on
// either side wherever float rounding allows:
//   edits (logit_bias, repetition/frequency/presence penalties) -> greedy argmax, or
//   p_i = exp((l_i - max) / T); top-k by (logit desc, id asc); top-p as the smallest best-first
//   prefix reaching top_p of the top-k mass; min-p against the best token; then the token where
//   the running mass passes u * kept mass, walking best-first (top-k or top-p set) or by id.
// "Best-first" order is a 64-bit key (orderable logit bits, then ~id), so ties are exact, and
// each threshold is found by radix select (radix_largest_key: 8 bits of the key a pass, masses in
// 2^-32 fixed point, so sums do not depend on their order), which needs no sort and no scratch
// beyond the row's logits and probabilities. Every pass over the row reads it 16 bytes a load
// with several loads in flight (visit_row); once the keys still in question are few, they are
// copied to shared memory and the remaining passes read only them; a top-p select leaves out the
// tokens too light to be in the set. (Building the key bit by bit, 64 passes a threshold, was
// 1.4-4x slower: bench/NOTES.md.)
//
// A row is one block's, or on Hopper, when the batch leaves SMs idle, a thread block cluster's (2,
// 4 or 8 blocks: sampler_blocks): each block takes an interleaved share of every pass, and the
// radix histograms and the reductions are summed over the cluster's shared memory, so a batch of
// a few rows is not a few SMs' work. The keys, the fixed-point masses and so every threshold are
// the same whatever the cluster size; the walk by id and the log-probability add their doubles in
// another order (so a row's draw by id can differ with the batch where rounding puts u * mass on
// a token boundary, as it can between this kernel and the host sampler).
#include <cooperative_groups.h>

#include <cfloat>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"
#include "loom/kernels/cuda/row_visit.cuh"
#include "loom/tensor/env.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {
namespace {

constexpr int kThreads = 512;  // 123 registers a thread: 1,024 threads (64 at most) spilled
constexpr int kUnroll = 8;  // 16-byte loads in flight a thread in the row passes that take them

// The blocks sharing a row: a cluster of `blocks` (1: the block alone, launched without clusters),
// this one `rank` among them; `me` is this thread's share of a row pass.
struct RowGroup {
  int blocks, rank;
  RowShare me;
  // Every thread of every block of the group; orders the blocks' global and shared memory.
  __device__ __forceinline__ void sync() const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (blocks > 1) {
      cooperative_groups::this_cluster().sync();
      return;
    }
#endif
    __syncthreads();
  }
  // p (this block's shared memory) as block b of the group holds it.
  template <typename T>
  __device__ __forceinline__ T* peer(T* p, int b) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (blocks > 1) return cooperative_groups::this_cluster().map_shared_rank(p, b);
#endif
    return p;
  }
};

__device__ __forceinline__ uint64_t sort_key(float v, int64_t i) {
  uint32_t b = __float_as_uint(v);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // larger float -> larger unsigned
  return (static_cast<uint64_t>(b) << 32) | (0xffffffffu - static_cast<uint32_t>(i));
}

template <typename T, typename Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  T r = part[0];
  for (int w = 1; w < warps; ++w) r = op(r, part[w]);
  return r;
}

struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// block_reduce over the group's blocks, combined in block order (every thread gets it).
template <typename T, typename Op>
__device__ T group_reduce(const RowGroup& g, T v, Op op) {
  v = block_reduce(v, op);
  if (g.blocks == 1) return v;
  __shared__ T mine;
  if (threadIdx.x == 0) mine = v;
  g.sync();
  T r = *g.peer(&mine, 0);
  for (int b = 1; b < g.blocks; ++b) r = op(r, *g.peer(&mine, b));
  g.sync();  // no block rewrites `mine` while a peer may still read it
  return r;
}

constexpr int kDigits = 256;  // a radix select pass resolves 8 bits of a key

// A probability in fixed point (2^-32 units; p <= 1, so a row's sum stays below 2^53 and converts
// to double exactly): sums that do not depend on their order, and integer atomics.
__device__ __forceinline__ uint64_t fixed_mass(float p) { return __double2ull_rn(static_cast<double>(p) * 4294967296.0); }

// Keys still in question, copied to shared memory once there are at most this many (32 KB).
constexpr int kCandidates = 2048;
struct Candidate {
  uint64_t key, w;
};

// Two histograms, a pass's and the one before: a block clears the next pass's while a peer may
// still be reading this one's.
struct RadixScratch {
  unsigned long long bins[2][kDigits];  // Σ w of this block's keys with each digit
  unsigned counts[2][kDigits];          // how many of this block's keys have each digit
  uint64_t prefix, above, total;
  unsigned in_range, copied;
  Candidate candidates[kCandidates];
};

// bins[digit] += w (w <= 2^32) and counts[digit] += 1 for every calling lane with digit >= 0, one
// atomic each for each group of the warp's calling lanes that share a digit. (A first version
// added doubles into per-warp histograms with atomicAdd: thousands of times slower,
// bench/NOTES.md: a whole row's keys fall in the few bins their top byte allows, and every lane of
// a warp retried on the same word.)
__device__ __forceinline__ void add_to_bin(unsigned long long* bins, unsigned* counts, int digit, uint64_t w) {
  const unsigned active = __activemask();
  if (!__any_sync(active, digit >= 0)) return;
  const unsigned peers = __match_any_sync(active, digit);
  // Split so that the group's sums fit 32 bits (32 lanes x 2^17).
  const unsigned hi = __reduce_add_sync(peers, static_cast<unsigned>(w >> 16));
  const unsigned lo = __reduce_add_sync(peers, static_cast<unsigned>(w & 0xffffu));
  if (digit >= 0 && static_cast<int>(threadIdx.x & 31) == __ffs(peers) - 1) {
    atomicAdd(&bins[digit], (static_cast<unsigned long long>(hi) << 16) + lo);
    atomicAdd(&counts[digit], static_cast<unsigned>(__popc(peers)));
  }
}

// The largest key t with pred(measure(t), total), where measure(t) = Σ w over the tokens whose key
// >= t and total = measure(0); pred holds at measure(0) and fails only above some key (the
// largest t by building it bit by bit, 8 bits a pass). visit(f) calls f(key, w) for every token
// that counts (w <= 2^32: 1 to count, fixed_mass to weigh). Each pass histograms digit `shift` of
// the keys that share the prefix found so far and takes the largest digit d with
// pred(above + Σ bins[d..255], total), `above` being the measure of the keys past the prefix's
// range. Once at most kCandidates keys share the prefix, one more pass copies them to shared
// memory and the later passes histogram only those. Every thread of the group must call this;
// each block visits its share of the keys (and copies its own candidates), and every block reads
// the group's summed histogram, so all take the same digits. known_total (when not 0) is
// measure(0) as the caller knows it, for a visit that leaves out tokens whose keys are known to lie
// below the answer.
template <typename Visit, typename Pred>
__device__ uint64_t radix_largest_key(const RowGroup& g, RadixScratch& sc, Visit visit, Pred pred,
                                      uint64_t known_total = 0) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  uint64_t prefix = 0, above = 0, total = 0;
  int copied = -1;  // candidates in shared memory (-1: none yet)
  for (int shift = 56; shift >= 0; shift -= 8) {
    const int buf = (shift / 8) & 1;
    unsigned long long* bins = sc.bins[buf];
    unsigned* counts = sc.counts[buf];
    for (int d = threadIdx.x; d < kDigits; d += blockDim.x) bins[d] = 0, counts[d] = 0;
    __syncthreads();
    const uint64_t high = shift == 56 ? 0 : ~uint64_t{0} << (shift + 8);  // the bits chosen so far
    auto bin = [&](uint64_t key, uint64_t w) {
      add_to_bin(bins, counts, w != 0 && (key & high) == prefix ? static_cast<int>((key >> shift) & (kDigits - 1)) : -1,
                 w);
    };
    if (copied < 0) {
      visit(bin);
    } else {  // whole warps, so that add_to_bin's warp-wide steps see every lane
      for (int i0 = threadIdx.x - lane; i0 < copied; i0 += blockDim.x) {
        const int i = i0 + lane;
        if (i < copied) bin(sc.candidates[i].key, sc.candidates[i].w);
        else bin(0, 0);
      }
    }
    g.sync();  // every block's histogram is complete
    if (warp == 0) {  // lane l holds digits [8l, 8l + 8), summed over the group's blocks
      constexpr int kPer = kDigits / 32;
      uint64_t merged[kPer] = {};
      for (int b = 0; b < g.blocks; ++b) {
        const unsigned long long* peer_bins = g.peer(bins, b);
#pragma unroll
        for (int j = 0; j < kPer; ++j) merged[j] += peer_bins[kPer * lane + j];
      }
      auto count_of = [&](int d) {
        unsigned n = 0;
        for (int b = 0; b < g.blocks; ++b) n += g.peer(counts, b)[d];
        return n;
      };
      uint64_t own = 0;
#pragma unroll
      for (int j = 0; j < kPer; ++j) own += merged[j];
      uint64_t incl = own;  // Σ over the lanes from this one up
      for (int o = 1; o < 32; o <<= 1) {
        const uint64_t y = __shfl_down_sync(0xffffffffu, incl, o);
        if (lane + o < 32) incl += y;
      }
      if (shift == 56) total = known_total ? known_total : __shfl_sync(0xffffffffu, incl, 0);  // all keys
      const uint64_t after = __shfl_down_sync(0xffffffffu, incl, 1);
      uint64_t run = lane == 31 ? 0 : after;  // Σ bins past the digit looked at
      int best = -1;
      uint64_t best_above = 0;
#pragma unroll
      for (int j = kPer - 1; j >= 0; --j) {
        const int d = kPer * lane + j;
        if (best < 0 && pred(above + run + merged[j], total)) best = d, best_above = above + run;
        run += merged[j];
      }
      const int d = static_cast<int>(__reduce_max_sync(0xffffffffu, static_cast<unsigned>(best + 1))) - 1;
      // pred fails from here: digit 0 (the bit-by-bit search would add no bit either)
      if (d < 0 && lane == 0) sc.prefix = prefix, sc.above = above, sc.in_range = count_of(0);
      if (d >= 0 && best == d)
        sc.prefix = prefix | (static_cast<uint64_t>(d) << shift), sc.above = best_above, sc.in_range = count_of(d);
      if (lane == 0) sc.total = total;
    }
    __syncthreads();
    prefix = sc.prefix;
    above = sc.above;
    total = sc.total;
    const unsigned in_range = sc.in_range;
    if (copied < 0 && shift > 0 && in_range <= kCandidates) {  // copy this block's keys still in question
      if (threadIdx.x == 0) sc.copied = 0;
      __syncthreads();
      const uint64_t chosen = ~uint64_t{0} << shift;
      visit([&](uint64_t key, uint64_t w) {
        if (w != 0 && (key & chosen) == prefix) sc.candidates[atomicAdd(&sc.copied, 1u)] = {key, w};
      });
      __syncthreads();
      copied = static_cast<int>(sc.copied);
    }
    __syncthreads();  // sc is rewritten by the next pass
  }
  return prefix;  // (a peer may still read this block's last histogram: the kernel syncs before it ends)
}

// The sum of v over the lanes below this one (lane order), by shuffles.
__device__ __forceinline__ double warp_exclusive_sum(double v, int lane) {
  double incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  const double before = __shfl_up_sync(0xffffffffu, incl, 1);
  return lane == 0 ? 0.0 : before;
}

// f(i, x[i]) for i in [lo, hi) in order until f returns false; 4 a load, kUnroll in flight when
// vec (lo and hi multiples of 4 then).
template <typename F>
__device__ __forceinline__ void walk_span(const float* x, int64_t lo, int64_t hi, bool vec, F f) {
  if (!vec) {
    for (int64_t i = lo; i < hi; ++i)
      if (!f(i, x[i])) return;
    return;
  }
  const float4* x4 = reinterpret_cast<const float4*>(x);
  for (int64_t c0 = lo / 4; c0 < hi / 4; c0 += kUnroll) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = c0 + u < hi / 4 ? x4[c0 + u] : float4{};
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + u;
      if (c >= hi / 4 || !f(4 * c, v[u].x) || !f(4 * c + 1, v[u].y) || !f(4 * c + 2, v[u].z) ||
          !f(4 * c + 3, v[u].w))
        return;
    }
  }
}

// Writes row r's token, and its log-probability under the raw row (like the host's token_logprob)
// where asked. Every thread of the group calls this, last: it syncs the group, so that no block
// ends while a peer may still read its shared memory.
__device__ void chosen_token(const RowGroup& g, const bf16* raw, int64_t vocab, bool vec_raw, const SampleRow& P,
                             int32_t chosen, int64_t r, int32_t* out_ids, float* out_logprobs) {
  const bool writer = g.rank == 0 && threadIdx.x == 0;
  if (P.want_logprob) {
    float m = -FLT_MAX;
    visit_row<kUnroll>(g.me, raw, vocab, vec_raw, [&](int64_t, float v) { m = fmaxf(m, v); });
    m = group_reduce(g, m, Max{});
    double s = 0;
    visit_row<kUnroll>(g.me, raw, vocab, vec_raw, [&](int64_t, float v) { s += exp(static_cast<double>(v) - m); });
    s = group_reduce(g, s, Sum{});
    if (writer) out_logprobs[r] = static_cast<float>(to_f(raw[chosen]) - (m + log(s)));
  }
  if (writer) out_ids[r] = chosen;
  if (g.blocks > 1) g.sync();
}

__global__ void __launch_bounds__(kThreads)
    sample_rows_kernel(const bf16* logits, int64_t ld, int64_t vocab, const SampleRow* rows, const SampleEdit* edits,
                       const uint32_t* masks, float* scratch_l, float* scratch_p, int32_t* out_ids,
                       float* out_logprobs, int blocks_per_row) {
  __shared__ RadixScratch radix;
  const int rank = static_cast<int>(blockIdx.x % blocks_per_row);
  const RowGroup g{blocks_per_row, rank,
                   {static_cast<int64_t>(rank) * blockDim.x + threadIdx.x, int64_t{blocks_per_row} * blockDim.x}};
  const int64_t r = blockIdx.x / blocks_per_row;
  const SampleRow P = rows[r];
  if (P.skip) return;
  const bf16* raw = logits + r * ld;
  float* l = scratch_l + r * vocab;
  float* p = scratch_p + r * vocab;
  const int64_t tid = threadIdx.x;
  const int64_t gid = g.me.first;  // this thread among the group's

  // The row passes' fast path (visit_row): 16-byte loads of the bf16 row and of the f32 scratch.
  const bool vec_raw = row_vectorizes(raw, vocab), vec = row_vectorizes(l, vocab) && row_vectorizes(p, vocab);
  const bool edited = P.edit_end > P.edit_begin || P.mask_row >= 0;
  if (P.greedy && !edited) {  // the argmax of the row as it is: one pass, no scratch
    uint64_t best = 0;
    visit_row<kUnroll>(g.me, raw, vocab, vec_raw, [&](int64_t i, float v) { best = max(best, sort_key(v, i)); });
    best = group_reduce(g, best, Max{});
    chosen_token(g, raw, vocab, vec_raw, P, static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(best)), r,
                 out_ids, out_logprobs);
    return;
  }
  // l = the row in f32 (16-byte stores where the scratch vectorizes), and its max when no edit follows.
  float m = -FLT_MAX;
  visit_chunks<kUnroll>(g.me, raw, vocab, vec_raw && vec, [&](int64_t i, const float (&v)[8], int n) {
    if (n == 8) {
      reinterpret_cast<float4*>(l + i)[0] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(l + i)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
      for (int j = 0; j < n; ++j) l[i + j] = v[j];
    }
    for (int j = 0; j < n; ++j) m = fmaxf(m, v[j]);
  });
  g.sync();  // an edit may fall in another thread's (or block's) share of the copy
  for (int64_t e = P.edit_begin + gid; e < P.edit_end; e += g.me.stride) {
    const SampleEdit E = edits[e];  // one edit per token: l + bias, repetition penalty, - sub
    float v = to_f(raw[E.token]) + E.bias;
    if (E.repetition != 1.0f) v = v > 0 ? v / E.repetition : v * E.repetition;
    l[E.token] = v - E.sub;
  }
  g.sync();
  if (P.mask_row >= 0) {  // a grammar's disallowed tokens can never be drawn
    const uint32_t* allowed = masks + static_cast<int64_t>(P.mask_row) * ((vocab + 31) / 32);
    for (int64_t i = gid; i < vocab; i += g.me.stride)
      if (!((allowed[i >> 5] >> (i & 31)) & 1u)) l[i] = -INFINITY;
    g.sync();
  }

  int32_t chosen;
  if (P.greedy) {
    uint64_t best = 0;
    visit_row<kUnroll>(g.me, l, vocab, vec, [&](int64_t i, float v) { best = max(best, sort_key(v, i)); });
    best = group_reduce(g, best, Max{});
    chosen = static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(best));
  } else {
    if (edited) {
      m = -FLT_MAX;
      visit_row<kUnroll>(g.me, l, vocab, vec, [&](int64_t, float v) { m = fmaxf(m, v); });
    }
    m = group_reduce(g, m, Max{});
    const double inv_t = 1.0 / P.temperature;
    // A top-p row without top-k sums its fixed-point mass here, so that its select can leave out
    // the tokens that cannot be in the set (a top-p draw at one row 1,422 -> 1,108 us on an H100).
    const bool top_k = P.top_k > 0 && P.top_k < vocab;
    const bool drop_tail = P.top_p < 1.0 && !top_k;
    unsigned long long mass = 0;
    visit_row<kUnroll>(g.me, l, vocab, vec, [&](int64_t i, float v) {
      const float pv = static_cast<float>(exp((static_cast<double>(v) - m) * inv_t));
      p[i] = pv;
      if (drop_tail) mass += fixed_mass(pv);
    });
    const uint64_t row_mass = drop_tail ? group_reduce(g, mass, Sum{}) : 0;
    g.sync();  // the walk by id reads p in other threads' (and blocks') shares

    // The radix select's visit of the tokens with key >= t whose probability passes `keep`:
    // f(key, fixed-point mass).
    auto weighed_from = [&](uint64_t t, auto keep) {
      return [&, t, keep](auto f) {
        visit_rows<kUnroll / 2>(g.me, l, p, vocab, vec, [&](int64_t i, float lv, float pv) {
          const uint64_t key = sort_key(lv, i);
          if (key >= t && keep(pv)) f(key, fixed_mass(pv));
        });
      };
    };
    uint64_t k_floor = 0;  // top-k: the k-th best key
    if (top_k) {
      k_floor = radix_largest_key(
          g, radix,
          [&](auto f) { visit_row<kUnroll>(g.me, l, vocab, vec, [&](int64_t i, float v) { f(sort_key(v, i), 1u); }); },
          [&](uint64_t n, uint64_t) { return n >= static_cast<uint64_t>(P.top_k); });
    }
    auto any = [](float) { return true; };
    uint64_t floor_key = k_floor;  // top-p: the smallest best-first prefix reaching top_p of the mass
    auto reaches_top_p = [&](uint64_t m, uint64_t total) {
      return static_cast<double>(m) >= P.top_p * static_cast<double>(total);
    };
    if (drop_tail) {  // (top_p < 1)
      // Token i cannot be in the set when 2 · vocab · w_i < (1 - top_p) · total: every token after
      // it in best-first order weighs at most w_i, so the tokens before it already hold more than
      // top_p of the mass (the factor 2 keeps rounding of the double comparison out of the way).
      // Leaving such tokens out changes no measure at or above the answer, so not the answer.
      const double tail = (1.0 - P.top_p) * static_cast<double>(row_mass) / (2.0 * static_cast<double>(vocab));
      auto may_be_in = [tail](float pv) { return static_cast<double>(fixed_mass(pv)) >= tail; };
      floor_key = radix_largest_key(g, radix, weighed_from(k_floor, may_be_in), reaches_top_p, row_mass);
    } else if (P.top_p < 1.0) {  // after top-k: the set's mass is that of the k kept
      floor_key = radix_largest_key(g, radix, weighed_from(k_floor, any), reaches_top_p);
    }
    const double min_p = P.min_p;
    auto kept = [&](float pv) { return static_cast<double>(pv) >= min_p; };
    if (P.top_k > 0 || P.top_p < 1.0) {  // best-first walk: the token where the mass passes u of it
      const uint64_t t = radix_largest_key(g, radix, weighed_from(floor_key, kept), [&](uint64_t m, uint64_t total) {
        return static_cast<double>(m) > P.u * static_cast<double>(total);
      });
      chosen = static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(t));
    } else {  // walk by id: each thread owns a contiguous span; a scan finds the one that crosses
      __shared__ double warp_base[32], block_mass;
      __shared__ int32_t found;  // block 0's is the group's
      const int64_t per = (vocab + g.me.stride - 1) / g.me.stride, span = vec ? (per + 3) / 4 * 4 : per;
      const int64_t lo = min(vocab, gid * span), hi = min(vocab, lo + span);
      double s = 0;
      walk_span(p, lo, hi, vec, [&](int64_t, float pv) {
        if (kept(pv)) s += pv;
        return true;
      });
      // Exclusive prefix of the spans' masses in id order (thread order): within each warp, over
      // the warps, then over the group's blocks.
      const int lane = static_cast<int>(tid & 31), warp = static_cast<int>(tid >> 5);
      const double before = warp_exclusive_sum(s, lane);
      if (tid == 0 && g.rank == 0) found = INT32_MAX;
      if (lane == 31) warp_base[warp] = before + s;
      __syncthreads();
      if (warp == 0) {
        const int warps = static_cast<int>(blockDim.x >> 5);
        const double own = lane < warps ? warp_base[lane] : 0.0;
        const double w_before = warp_exclusive_sum(own, lane);
        __syncwarp();
        if (lane < warps) warp_base[lane] = w_before;
        if (lane == warps - 1) block_mass = w_before + own;  // this block's spans' sum
      }
      g.sync();
      double kept_mass = *g.peer(&block_mass, 0), blocks_before = 0.0;  // the whole kept mass
      for (int b = 1; b < g.blocks; ++b) {
        if (b == g.rank) blocks_before = kept_mass;
        kept_mass += *g.peer(&block_mass, b);
      }
      const double target = P.u * kept_mass;
      double acc = warp_base[warp] + before + blocks_before;
      int32_t last = -1;
      int32_t* group_found = g.peer(&found, 0);
      walk_span(p, lo, hi, vec, [&](int64_t i, float pv) {
        if (!kept(pv) || pv <= 0) return true;
        if (acc + pv > target) {  // rounding may let two spans cross: the lower id wins
          atomicMin(group_found, static_cast<int32_t>(i));
          return false;
        }
        acc += pv;
        last = static_cast<int32_t>(i);
        return true;
      });
      g.sync();
      // Rounding left the target past the end: the last kept token, as on the host.
      const int32_t first_found = *group_found;
      const int32_t last_kept = group_reduce(g, last, Max{});
      chosen = first_found != INT32_MAX ? first_found : last_kept;
    }
  }

  chosen_token(g, raw, vocab, vec_raw, P, chosen, r, out_ids, out_logprobs);
}

// The kernel's launch over `grid` blocks, in clusters of `blocks` (1: no clusters).
struct ClusterLaunch {
  cudaLaunchAttribute attr{};
  cudaLaunchConfig_t cfg{};
  ClusterLaunch(int64_t grid, int blocks, cudaStream_t s) {
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = static_cast<unsigned>(blocks);
    attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
    cfg.gridDim = dim3(static_cast<unsigned>(grid));
    cfg.blockDim = dim3(kThreads);
    cfg.stream = s;
    cfg.attrs = &attr;
    cfg.numAttrs = blocks > 1 ? 1 : 0;
  }
  ClusterLaunch(const ClusterLaunch&) = delete;  // cfg points at attr
  ClusterLaunch& operator=(const ClusterLaunch&) = delete;
};

// Whether the device runs clusters of `blocks` of the kernel's blocks (Hopper and later). Per
// device, as completion_counters().
bool clusters_fit(int blocks) {
  thread_local std::map<std::pair<int, int>, bool> by_device;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const auto [it, fresh] = by_device.try_emplace({device, blocks}, false);
  if (fresh) {
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major >= 9) {
      const ClusterLaunch one(blocks, blocks, nullptr);
      int clusters = 0;
      CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, sample_rows_kernel, &one.cfg));
      it->second = clusters > 0;
    }
  }
  return it->second;
}

// Blocks a row: the most (8, 4, 2) whose rows x blocks still fit one block an SM, where the device
// runs such clusters, else 1. One block an SM is what the kernel's registers allow; past that,
// clusters only add their syncs (BM_SampleRows, H100, top-p 0.9: 1 row 1,422 -> 302 us with 8
// blocks, 32 rows 1,461 -> 879 with 4, but 128 rows 1,541 -> 2,795 with 8: bench/NOTES.md).
// LOOM_SAMPLER_BLOCKS=1|2|4|8 fixes the count instead (A/B runs).
int sampler_blocks(int64_t rows, int asked) {
  static const int fixed = [] {
    const char* v = std::getenv("LOOM_SAMPLER_BLOCKS");
    if (!v || !*v) return 0;
    const std::string s(v);
    LOOM_CHECK(s == "1" || s == "2" || s == "4" || s == "8", "LOOM_SAMPLER_BLOCKS=", s,
               ": blocks sampling one row must be 1, 2, 4 or 8");
    return std::stoi(s);
  }();
  LOOM_CHECK(asked == 0 || asked == 1 || asked == 2 || asked == 4 || asked == 8, "sample_rows: ", asked,
             " blocks a row (0 to choose, or 1, 2, 4, 8)");
  int blocks = asked ? asked : fixed;
  if (blocks == 0) {
    const int64_t sms = sm_count();
    blocks = 8;
    while (blocks > 1 && rows * blocks > sms) blocks /= 2;
  }
  return blocks > 1 && clusters_fit(blocks) ? blocks : 1;
}

}  // namespace

void sample_rows(const void* logits, int64_t rows, int64_t ld, int64_t vocab, const SampleRow* params,
                 const SampleEdit* edits, const uint32_t* masks, float* scratch_l, float* scratch_p, int32_t* out_ids,
                 float* out_logprobs, cudaStream_t s, int blocks_per_row) {
  if (rows == 0) return;
  const int blocks = sampler_blocks(rows, blocks_per_row);
  const ClusterLaunch launch(rows * blocks, blocks, s);
  CUDA_CHECK(cudaLaunchKernelEx(&launch.cfg, sample_rows_kernel, static_cast<const bf16*>(logits), ld, vocab, params,
                                edits, masks, scratch_l, scratch_p, out_ids, out_logprobs, blocks));
}

namespace {
__global__ void resolve_previous_ids_kernel(int32_t* ids, int64_t n, const int32_t* previous) {
  for (int64_t i = threadIdx.x + int64_t(blockIdx.x) * blockDim.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    if (ids[i] < 0) ids[i] = previous[-1 - ids[i]];
}
}  // namespace

void resolve_previous_ids(int32_t* ids, int64_t n, const int32_t* previous, cudaStream_t s) {
  if (n == 0) return;
  resolve_previous_ids_kernel<<<1, 256, 0, s>>>(ids, n, previous);
  CUDA_CHECK_LAUNCH("resolve_previous_ids");
}

}  // namespace loom::kernels::cuda
