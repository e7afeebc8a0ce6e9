// Kernels of the parallel layers and of the shared-GPU communicator (see parallel.h).
#include "loom/kernels/cuda/common.cuh"
#include "loom/kernels/cuda/parallel.h"

namespace loom::kernels::cuda {
namespace {

template <typename T>
struct Acc {  // what a sum of T accumulates in
  using type = T;
};
template <>
struct Acc<bf16> {
  using type = float;
};
template <typename T> __device__ __forceinline__ typename Acc<T>::type load(const T* p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ float load<bf16>(const bf16* p, int64_t i) { return to_f(p[i]); }
template <typename T> __device__ __forceinline__ void store(T* p, int64_t i, typename Acc<T>::type v) { p[i] = v; }
template <> __device__ __forceinline__ void store<bf16>(bf16* p, int64_t i, float v) { p[i] = to_bf(v); }

template <typename T>
__global__ void sum_kernel(SumSources src, T* dst, int64_t elems) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < elems; i += int64_t(gridDim.x) * blockDim.x) {
    typename Acc<T>::type v = load(static_cast<const T*>(src.p[0]), i);
    for (int j = 1; j < src.n; ++j) v += load(static_cast<const T*>(src.p[j]), i);
    store(dst, i, v);
  }
}

// One thread per column; each walks the source rows in order, so the sums do not depend on timing.
__global__ void index_add_rows_kernel(bf16* out, const bf16* src, const int32_t* rows, int64_t n, int64_t dim,
                                      int64_t out_rows) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= dim) return;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = rows[i];
    if (r < 0 || r >= out_rows) continue;  // checked on the host side of the op
    out[r * dim + c] = to_bf(to_f(out[r * dim + c]) + to_f(src[i * dim + c]));
  }
}

// One block: for each peer, a block-wide scan over the tokens' "has an expert there" flags.
__global__ void moe_dispatch_plan_kernel(const int32_t* ids, const float* weights, int64_t t, int k, int peers,
                                         int64_t experts, int32_t* rows, float* meta, int32_t* counts) {
  __shared__ int warp_totals[32];
  __shared__ int base;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (threadIdx.x == 0) base = 0;
  __syncthreads();
  for (int p = 0; p < peers; ++p) {
    const int64_t lo = experts * p / peers, hi = experts * (p + 1) / peers;
    const int peer_base = base;
    for (int64_t t0 = 0; t0 < t; t0 += blockDim.x) {
      const int64_t tok = t0 + threadIdx.x;
      int hit = 0;
      if (tok < t)
        for (int j = 0; j < k; ++j) hit |= ids[tok * k + j] >= lo && ids[tok * k + j] < hi;
      // Exclusive scan of hit over the block: ballot within the warp, then the warps' totals.
      const unsigned ballot = __ballot_sync(0xffffffffu, hit);
      const int before_in_warp = __popc(ballot & ((1u << lane) - 1));
      if (lane == 0) warp_totals[warp] = __popc(ballot);
      __syncthreads();
      int before = 0, total = 0;
      for (int w = 0; w < warps; ++w) {
        before += w < warp ? warp_totals[w] : 0;
        total += warp_totals[w];
      }
      if (hit) {
        const int64_t pos = base + before + before_in_warp;
        rows[pos] = static_cast<int32_t>(tok);
        for (int j = 0; j < k; ++j) {
          meta[pos * 2 * k + j] = static_cast<float>(ids[tok * k + j]);
          meta[pos * 2 * k + k + j] = weights[tok * k + j];
        }
      }
      __syncthreads();  // everyone read base and warp_totals
      if (threadIdx.x == 0) base += total;
      __syncthreads();
    }
    if (threadIdx.x == 0) counts[p] = base - peer_base;
    __syncthreads();
  }
}

__global__ void unpack_routing_kernel(const float* meta, int64_t n, int k, int32_t* ids, float* weights) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n * k) return;
  const int64_t row = i / k, j = i % k;
  ids[i] = static_cast<int32_t>(meta[row * 2 * k + j]);
  weights[i] = meta[row * 2 * k + k + j];
}

}  // namespace

void sum_buffers(const SumSources& src, void* dst, int64_t elems, SumType type, cudaStream_t s) {
  LOOM_CHECK(src.n >= 1 && src.n <= kMaxSumSources, "sum_buffers: ", src.n, " sources (1..", kMaxSumSources, ")");
  if (elems == 0) return;
  const unsigned grid = grid_for(elems, 256) > 4096 ? 4096 : grid_for(elems, 256);
  switch (type) {
    case SumType::f32: sum_kernel<float><<<grid, 256, 0, s>>>(src, static_cast<float*>(dst), elems); break;
    case SumType::bf16: sum_kernel<bf16><<<grid, 256, 0, s>>>(src, static_cast<bf16*>(dst), elems); break;
    case SumType::i32: sum_kernel<int32_t><<<grid, 256, 0, s>>>(src, static_cast<int32_t*>(dst), elems); break;
    case SumType::i64:
      sum_kernel<long long><<<grid, 256, 0, s>>>(src, static_cast<long long*>(dst), elems);
      break;
  }
  CUDA_CHECK_LAUNCH("sum_buffers");
}

void index_add_rows(void* out, const void* src, const int32_t* rows, int64_t n, int64_t dim, int64_t out_rows,
                    cudaStream_t s) {
  if (n == 0 || dim == 0) return;
  index_add_rows_kernel<<<grid_for(dim, 128), 128, 0, s>>>(static_cast<bf16*>(out), static_cast<const bf16*>(src),
                                                           rows, n, dim, out_rows);
  CUDA_CHECK_LAUNCH("index_add_rows");
}

void moe_dispatch_plan(const int32_t* ids, const float* weights, int64_t t, int64_t k, int peers, int64_t experts,
                       int32_t* rows, float* meta, int32_t* counts, cudaStream_t s) {
  LOOM_CHECK(peers >= 1 && k >= 1, "moe_dispatch_plan: ", peers, " peers, top-", k);
  moe_dispatch_plan_kernel<<<1, 1024, 0, s>>>(ids, weights, t, static_cast<int>(k), peers, experts, rows, meta,
                                              counts);
  CUDA_CHECK_LAUNCH("moe_dispatch_plan");
}

void unpack_routing(const float* meta, int64_t n, int64_t k, int32_t* ids, float* weights, cudaStream_t s) {
  if (n == 0) return;
  unpack_routing_kernel<<<grid_for(n * k, 256), 256, 0, s>>>(meta, n, static_cast<int>(k), ids, weights);
  CUDA_CHECK_LAUNCH("unpack_routing");
}

}  // namespace loom::kernels::cuda
