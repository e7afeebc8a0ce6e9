// The arithmetic of a head's RMSNorm and NeoX RoPE, shared by qk_norm_rope_kernel (elementwise.cu)
// and the decode attention kernel that folds them in (decode_attention.cu), which must agree bit
// for bit (CudaKernels.DecodeAttentionFoldsTheQkNormAndRope). Every rounding is spelled out:
// __fmul_rn and its kin are never contracted into FMAs, so nvcc cannot fuse differently at the two
// sites. (Written as plain expressions, the rotation's x·cos + y·sin became fma(y, sin, x·cos) in
// one kernel and fma(x, cos, y·sin) in the other.)
#pragma once
#include "loom/kernels/cuda/common.cuh"

namespace loom::kernels::cuda {

// cos and sin of the angle pos·inv_freq, times the rotary scaling.
__device__ __forceinline__ void rope_cos_sin(float pos, float inv_freq, float scaling, float& cs, float& sn) {
  float s, c;
  sincosf(__fmul_rn(pos, inv_freq), &s, &c);
  cs = __fmul_rn(c, scaling);
  sn = __fmul_rn(s, scaling);
}

// A lane's running sum of squares: ss + x·x, one fused multiply-add.
__device__ __forceinline__ float add_square(float ss, float x) { return __fmaf_rn(x, x, ss); }

// 1 / RMS of a head of d elements whose squares sum to ss.
__device__ __forceinline__ float rms_inverse(float ss, int64_t d, float eps) {
  return rsqrtf(__fadd_rn(__fdiv_rn(ss, static_cast<float>(d)), eps));
}

// (x·inv)·w, rounded through bf16 as the unfused norm's output would be before RoPE reads it.
__device__ __forceinline__ float rms_scaled(float x, float inv, bf16 w) {
  return to_f(to_bf(__fmul_rn(__fmul_rn(x, inv), to_f(w))));
}

// One element of the NeoX rotation, x being element c and partner its other half's element
// (c + D/2 in the first half, c - D/2 in the second): x·cos - partner·sin, or x·cos + partner·sin.
__device__ __forceinline__ float rope_rotate(float x, float partner, float cs, float sn, bool first_half) {
  const float a = __fmul_rn(x, cs), b = __fmul_rn(partner, sn);
  return first_half ? __fsub_rn(a, b) : __fadd_rn(a, b);
}

}  // namespace loom::kernels::cuda
