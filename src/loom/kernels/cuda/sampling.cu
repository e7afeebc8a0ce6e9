// Per-request token sampling over a step's bf16 logits, one block per row, with the host
// sampler's semantics (engine/sampler.cc) so that a seeded request draws the same token on
// either side wherever float rounding allows:
//   edits (logit_bias, repetition/frequency/presence penalties) -> greedy argmax, or
//   p_i = exp((l_i - max) / T); top-k by (logit desc, id asc); top-p as the smallest best-first
//   prefix reaching top_p of the top-k mass; min-p against the best token; then the token where
//   the running mass passes u * kept mass, walking best-first (top-k or top-p set) or by id.
// "Best-first" order is a 64-bit key (orderable logit bits, then ~id), so ties are exact, and
// each threshold is found by building the key bit by bit (64 passes over the row in L2), which
// needs no sort and no scratch beyond the row's logits and probabilities.
#include <cfloat>

#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/kernels.h"

namespace loom::kernels::cuda {
namespace {

constexpr int kThreads = 1024;

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

// The largest key t such that pred(t) holds, for a predicate that is true at 0 and monotone
// (true below some bound, false above). pred is evaluated collectively by the block.
template <typename Pred>
__device__ uint64_t largest_key(Pred pred) {
  uint64_t t = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const uint64_t c = t | (uint64_t{1} << bit);
    if (pred(c)) t = c;
  }
  return t;
}

__global__ void sample_rows_kernel(const bf16* logits, int64_t ld, int64_t vocab, const SampleRow* rows,
                                   const SampleEdit* edits, const uint32_t* masks, float* scratch_l, float* scratch_p,
                                   int32_t* out_ids, float* out_logprobs) {
  const int64_t r = blockIdx.x;
  const SampleRow P = rows[r];
  if (P.skip) return;
  const bf16* raw = logits + r * ld;
  float* l = scratch_l + r * vocab;
  float* p = scratch_p + r * vocab;
  const int64_t tid = threadIdx.x;

  for (int64_t i = tid; i < vocab; i += blockDim.x) l[i] = to_f(raw[i]);
  __syncthreads();
  for (int32_t e = P.edit_begin + static_cast<int32_t>(tid); e < P.edit_end; e += blockDim.x) {
    const SampleEdit E = edits[e];  // one edit per token: l + bias, repetition penalty, - sub
    float v = to_f(raw[E.token]) + E.bias;
    if (E.repetition != 1.0f) v = v > 0 ? v / E.repetition : v * E.repetition;
    l[E.token] = v - E.sub;
  }
  __syncthreads();
  if (P.mask_row >= 0) {  // a grammar's disallowed tokens can never be drawn
    const uint32_t* allowed = masks + static_cast<int64_t>(P.mask_row) * ((vocab + 31) / 32);
    for (int64_t i = tid; i < vocab; i += blockDim.x)
      if (!((allowed[i >> 5] >> (i & 31)) & 1u)) l[i] = -INFINITY;
    __syncthreads();
  }

  int32_t chosen;
  if (P.greedy) {
    uint64_t best = 0;
    for (int64_t i = tid; i < vocab; i += blockDim.x) best = max(best, sort_key(l[i], i));
    best = block_reduce(best, Max{});
    chosen = static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(best));
  } else {
    float m = -FLT_MAX;
    for (int64_t i = tid; i < vocab; i += blockDim.x) m = fmaxf(m, l[i]);
    m = block_reduce(m, Max{});
    const double inv_t = 1.0 / P.temperature;
    for (int64_t i = tid; i < vocab; i += blockDim.x)
      p[i] = static_cast<float>(exp((static_cast<double>(l[i]) - m) * inv_t));
    __syncthreads();

    // Mass (double) of the tokens with key >= t that pass `keep`.
    auto mass_from = [&](uint64_t t, auto keep) {
      double s = 0;
      for (int64_t i = tid; i < vocab; i += blockDim.x)
        if (sort_key(l[i], i) >= t && keep(i)) s += p[i];
      return block_reduce(s, Sum{});
    };
    uint64_t k_floor = 0;  // top-k: the k-th best key
    if (P.top_k > 0 && P.top_k < vocab) {
      k_floor = largest_key([&](uint64_t t) {
        unsigned n = 0;
        for (int64_t i = tid; i < vocab; i += blockDim.x) n += sort_key(l[i], i) >= t;
        return block_reduce(n, Sum{}) >= static_cast<unsigned>(P.top_k);
      });
    }
    auto any = [](int64_t) { return true; };
    uint64_t floor_key = k_floor;  // top-p: the smallest best-first prefix reaching top_p
    if (P.top_p < 1.0) {
      const double target = P.top_p * mass_from(k_floor, any);
      floor_key = largest_key([&](uint64_t t) { return mass_from(max(t, k_floor), any) >= target; });
    }
    const double min_p = P.min_p;
    auto kept = [&](int64_t i) { return static_cast<double>(p[i]) >= min_p; };
    const double total = mass_from(floor_key, kept);
    const double target = P.u * total;
    if (P.top_k > 0 || P.top_p < 1.0) {  // best-first walk
      const uint64_t t = largest_key([&](uint64_t t) { return mass_from(max(t, floor_key), kept) > target; });
      chosen = static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(t));
    } else {  // walk by id: each thread owns a contiguous span; a block scan finds the one that crosses
      __shared__ double span_sum[kThreads];
      __shared__ int32_t found;
      const int64_t span = (vocab + blockDim.x - 1) / blockDim.x;
      const int64_t lo = min(vocab, tid * span), hi = min(vocab, lo + span);
      double s = 0;
      for (int64_t i = lo; i < hi; ++i)
        if (kept(i)) s += p[i];
      span_sum[tid] = s;
      if (tid == 0) found = INT32_MAX;
      __syncthreads();
      if (tid == 0) {  // exclusive prefix, in id order like the host's running sum
        double acc = 0;
        for (int64_t j = 0; j < blockDim.x; ++j) {
          const double v = span_sum[j];
          span_sum[j] = acc;
          acc += v;
        }
      }
      __syncthreads();
      double acc = span_sum[tid];
      int32_t last = -1;
      for (int64_t i = lo; i < hi; ++i) {
        if (!kept(i) || p[i] <= 0) continue;
        if (acc + p[i] > target) {  // rounding may let two spans cross: the lower id wins
          atomicMin(&found, static_cast<int32_t>(i));
          break;
        }
        acc += p[i];
        last = static_cast<int32_t>(i);
      }
      __syncthreads();
      // Rounding left the target past the end: the last kept token, as on the host.
      const int32_t last_kept = block_reduce(last, Max{});
      chosen = found != INT32_MAX ? found : last_kept;
    }
  }

  if (P.want_logprob) {  // of the raw row, like the host's token_logprob
    float m = -FLT_MAX;
    for (int64_t i = tid; i < vocab; i += blockDim.x) m = fmaxf(m, to_f(raw[i]));
    m = block_reduce(m, Max{});
    double s = 0;
    for (int64_t i = tid; i < vocab; i += blockDim.x) s += exp(static_cast<double>(to_f(raw[i])) - m);
    s = block_reduce(s, Sum{});
    if (tid == 0) out_logprobs[r] = static_cast<float>(to_f(raw[chosen]) - (m + log(s)));
  }
  if (tid == 0) out_ids[r] = chosen;
}

}  // namespace

void sample_rows(const void* logits, int64_t rows, int64_t ld, int64_t vocab, const SampleRow* params,
                 const SampleEdit* edits, const uint32_t* masks, float* scratch_l, float* scratch_p, int32_t* out_ids,
                 float* out_logprobs, cudaStream_t s) {
  if (rows == 0) return;
  sample_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(static_cast<const bf16*>(logits), ld, vocab,
                                                                      params, edits, masks, scratch_l, scratch_p,
                                                                      out_ids, out_logprobs);
  CUDA_CHECK_LAUNCH("sample_rows");
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
