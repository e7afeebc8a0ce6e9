// The CPU reference math, fp32, row-major contiguous buffers. Written to be read: the CUDA
// kernels are tested against these. Nothing here allocates memory the caller must know about.
#pragma once
#include <cstdint>

namespace loom::kernels::cpu {

// y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n]) — the Hugging Face Linear layout, through BLAS.
void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
            int64_t k);

// y = x / sqrt(mean(x²) + eps) * w, per row of length dim. x and y may alias.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);

// Rotary embedding in the NeoX/Qwen layout (rotate the two halves of the first rotary_dim
// dims) on x[tokens, heads, head_dim], in place. inv_freq has rotary_dim/2 entries;
// cos/sin are multiplied by `scaling` (YaRN's attention factor, 1 otherwise).
void rope_neox(float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
               int64_t rotary_dim, const float* inv_freq, float scaling);

// Numerically stable softmax over each row of length n, in place.
void softmax(float* x, int64_t rows, int64_t n);

// out[m, i] = silu(gate_up[m, i]) * gate_up[m, inter + i] (gate and up concatenated).
void silu_and_mul(const float* gate_up, float* out, int64_t m, int64_t inter);
// gpt-oss: out = (clamp(up, ±limit) + 1) · g · σ(alpha · g), g = min(gate, limit); gate_up rows [gate | up].
void clamped_swiglu(const float* gate_up, float* out, int64_t m, int64_t inter, float alpha, float limit);

// The k largest of each row, descending; ties go to the lower index.
void topk(const float* x, int64_t rows, int64_t n, int64_t k, float* values, int32_t* indices);

// DeepSeek's group-limited top-k: each row's n scores form `groups` equal runs; the `topk_group`
// runs with the highest maximum are kept, the others' scores count as 0, and the k largest are
// taken as topk takes them (topk_group == groups: plain top-k).
void grouped_topk(const float* x, int64_t rows, int64_t n, int64_t groups, int64_t topk_group, int64_t k,
                  float* values, int32_t* indices);

// out[i] = table[ids[i]], rows of length dim.
void embedding(const float* table, const int32_t* ids, float* out, int64_t n, int64_t dim);

// Paged KV cache of one layer: slot s holds k[s, kv_heads, k_dim] and v[s, kv_heads, v_dim];
// position p of a sequence lives in slot page_table[p / page_size] * page_size + p % page_size.
struct PagedKv {
  float* k;
  float* v;
  int64_t page_size;
  int64_t kv_heads;
  int64_t k_dim;
  int64_t v_dim;
};

int64_t kv_slot(const int32_t* page_table, int64_t page_size, int64_t pos);

// Writes k[t, kv_heads, k_dim] / v[t, kv_heads, v_dim] of tokens at positions start_pos.. .
void write_kv(const PagedKv& kv, const int32_t* page_table, int64_t start_pos, int64_t tokens,
              const float* k, const float* v);

// Causal attention of `tokens` queries at positions start_pos.. against cached positions
// [0, own position] (or the last `sliding_window` of them when > 0). q[t, q_heads, k_dim],
// out[t, q_heads, v_dim]. GQA: query head h reads kv head h / (q_heads / kv_heads).
// `sinks` (nullable, [q_heads]) adds one learned logit per head to the softmax denominator.
void paged_attention(const float* q, int64_t tokens, int64_t q_heads, const PagedKv& kv,
                     const int32_t* page_table, int64_t start_pos, float scale,
                     int64_t sliding_window, const float* sinks, float* out);

}  // namespace loom::kernels::cpu
