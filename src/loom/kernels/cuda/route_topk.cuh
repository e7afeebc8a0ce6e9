// The router's top-k for one token, by one warp (kernels/cuda/moe.cu's route_topk and the fused
// router GEMV in gemv.cu): softmax of the token's expert logits in f32, probabilities staged in
// shared memory `p` [e], top-k by repeated arg-max. With groups > 1 (DeepSeek), only the experts of
// the topk_group groups with the highest best probability compete (lane g holds group g's best;
// groups <= 32). Weights renormalised over the k picked when asked, then times `scale`.
#pragma once
#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda {

__device__ __forceinline__ void route_token(const bf16* logits, int64_t tok, int e, int k, bool renormalize,
                                            float* weights, int32_t* ids, int groups, int topk_group, float scale,
                                            float* p) {
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
