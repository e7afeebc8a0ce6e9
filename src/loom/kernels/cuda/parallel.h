// Launchers of the kernels the parallel layers and the shared-GPU communicator need: summing the
// ranks' buffers, combining all-to-all MoE results, and planning an expert-parallel dispatch on
// the device. Raw device pointers and the stream to run on; callers own every buffer.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace loom::kernels::cuda {

// ---- parallel.cu ----
enum class SumType { f32, bf16, i32, i64 };
inline constexpr int kMaxSumSources = 64;
struct SumSources {
  const void* p[kMaxSumSources];
  int n = 0;
};
// dst[i] = Σ_j src.p[j][i] for i < elems, summed in source order (bf16 in f32, rounded once), so
// every rank that sums the same sources in the same order gets the same bits.
void sum_buffers(const SumSources& src, void* dst, int64_t elems, SumType type, cudaStream_t s);

// out[rows[i]] += src[i] (bf16 rows of `dim`), added in i order so the result does not depend on
// timing. Rows outside [0, out_rows) are skipped (the op checks them on the host first).
void index_add_rows(void* out, const void* src, const int32_t* rows, int64_t n, int64_t dim, int64_t out_rows,
                    cudaStream_t s);

// Expert-parallel dispatch plan from routing ids/weights [t, k]: peer p owns experts
// [E·p/peers, E·(p+1)/peers). For each peer in order, the tokens with at least one expert there,
// in token order: rows[] gets the token index and meta[] its k expert ids (as floats) then its k
// weights. counts[p] = rows for peer p. rows/meta hold at most t·peers entries.
void moe_dispatch_plan(const int32_t* ids, const float* weights, int64_t t, int64_t k, int peers, int64_t experts,
                       int32_t* rows, float* meta, int32_t* counts, cudaStream_t s);
// The inverse of the meta layout: meta [n, 2k] -> ids i32 [n, k], weights f32 [n, k].
void unpack_routing(const float* meta, int64_t n, int64_t k, int32_t* ids, float* weights, cudaStream_t s);

}  // namespace loom::kernels::cuda
