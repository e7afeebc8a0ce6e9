// The router's top-k for one token, by one warp (kernels/cuda/moe.cu's route_topk and the fused
// router GEMV in gemv.cu): softmax of the token's expert logits in f32, probabilities staged in
// shared memory `p` [e], top-k by repeated arg-max. With groups > 1 (DeepSeek), only the experts of
// the topk_group groups with the highest best probability compete (lane g holds group g's best;
// groups <= 32). Weights renormalised over the k picked when asked, then times `scale`.
#pragma once
#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda {

// Without groups and for e <= 32 · kRouteRegs experts the probabilities stay in registers (lane l
// holds experts l, l + 32, ...) and each pick is two warp reductions (redux.sync: the largest
// probability, then the lowest expert holding it): the same picks and weights as the scan below,
// faster (the scan walks shared memory and shuffles index and value apart, and the router's top-k
// is a decode layer's tail: bs-1 decode 3.082 -> 3.000 ms, bench/NOTES.md).
constexpr int kRouteRegs = 8;

__device__ __forceinline__ void route_token_in_registers(const bf16* logits, int64_t tok, int e, int k,
                                                         bool renormalize, float* weights, int32_t* ids,
                                                         float scale) {
  const int lane = threadIdx.x & 31;
  float p[kRouteRegs];
  float mx = -INFINITY;
#pragma unroll
  for (int r = 0; r < kRouteRegs; ++r) {
    const int i = lane + 32 * r;
    p[r] = i < e ? to_f(__ldcg(logits + tok * e + i)) : -INFINITY;  // L2: another block may have written it
    mx = fmaxf(mx, p[r]);
  }
  mx = warp_max(mx);
  float sum = 0;
#pragma unroll
  for (int r = 0; r < kRouteRegs; ++r) {
    const int i = lane + 32 * r;
    p[r] = i < e ? __expf(p[r] - mx) : -3.0f;
    if (i < e) sum += p[r];
  }
  sum = warp_sum(sum);
  float picked_sum = 0, my_w = 0;
  int my_id = 0;
  for (int j = 0; j < k; ++j) {
    // Non-negative floats order as their bits; + 1 puts a probability of 0 above the taken (-2) and
    // padding (-3) marks, which map to 0.
    unsigned best = 0;
#pragma unroll
    for (int r = 0; r < kRouteRegs; ++r) best = max(best, p[r] >= 0.0f ? __float_as_uint(p[r]) + 1u : 0u);
    best = __reduce_max_sync(0xffffffffu, best);
    unsigned mine = 0xffffffffu;
#pragma unroll
    for (int r = kRouteRegs - 1; r >= 0; --r)
      if (p[r] >= 0.0f && __float_as_uint(p[r]) + 1u == best) mine = lane + 32 * r;
    const unsigned bi = __reduce_min_sync(0xffffffffu, mine);
    const float w = __uint_as_float(best - 1u) / sum;
    picked_sum += w;
    if (lane == j) my_w = w, my_id = static_cast<int>(bi);
#pragma unroll
    for (int r = 0; r < kRouteRegs; ++r)
      if (lane + 32 * r == static_cast<int>(bi)) p[r] = -2.0f;  // never picked again
  }
  if (lane < k) {
    weights[tok * k + lane] = (renormalize ? my_w / picked_sum : my_w) * scale;
    ids[tok * k + lane] = my_id;
  }
}

__device__ __forceinline__ void route_token(const bf16* logits, int64_t tok, int e, int k, bool renormalize,
                                            float* weights, int32_t* ids, int groups, int topk_group, float scale,
                                            float* p) {
  if (groups <= 1 && e <= 32 * kRouteRegs)
    return route_token_in_registers(logits, tok, e, k, renormalize, weights, ids, scale);
  const int lane = threadIdx.x & 31;
  float mx = -INFINITY;
  for (int i = lane; i < e; i += 32) {
    p[i] = to_f(__ldcg(logits + tok * e + i));  // L2: another block of a fused launch wrote it
    mx = fmaxf(mx, p[i]);
  }
  mx = warp_max(mx);
  float sum = 0;
  for (int i = lane; i < e; i += 32) {
    p[i] = __expf(p[i] - mx);
    sum += p[i];
  }
  sum = warp_sum(sum);
  __syncwarp();
  if (groups > 1) {
    const int size = e / groups;
    float best = -1.0f;  // lane g: group g's best probability
    for (int g = 0; g < groups; ++g) {
      float m = -1.0f;
      for (int i = g * size + lane; i < (g + 1) * size; i += 32) m = fmaxf(m, p[i]);
      m = warp_max(m);
      if (lane == g) best = m;
    }
    bool kept = false;
    for (int j = 0; j < topk_group; ++j) {  // arg-max over lanes, lowest group on ties
      float bv = best;
      int bg = lane < groups ? lane : 0x7fffffff;
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int og = __shfl_xor_sync(0xffffffffu, bg, o);
        if (ov > bv || (ov == bv && og < bg)) bv = ov, bg = og;
      }
      if (lane == bg) kept = true, best = -2.0f;
    }
    for (int g = 0; g < groups; ++g) {
      const bool keep = __shfl_sync(0xffffffffu, kept, g);
      if (!keep)
        for (int i = g * size + lane; i < (g + 1) * size; i += 32) p[i] = -3.0f;  // out of the race
    }
    __syncwarp();
  }
  float picked_sum = 0;
  for (int j = 0; j < k; ++j) {
    float bv = -1.0f;
    int bi = 0x7fffffff;
    for (int i = lane; i < e; i += 32)
      if (p[i] > bv || (p[i] == bv && i < bi)) bv = p[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    const float w = bv / sum;
    picked_sum += w;
    if (lane == 0) {
      weights[tok * k + j] = w;
      ids[tok * k + j] = bi;
      p[bi] = -2.0f;  // never picked again
    }
    __syncwarp();
  }
  if (lane < k) weights[tok * k + lane] = (renormalize ? weights[tok * k + lane] / picked_sum : weights[tok * k + lane]) * scale;
  // (lane < k reads the value lane 0 wrote before the last __syncwarp; k <= 32 is checked on the host)
}

}  // namespace loom::kernels::cuda
