#include "loom/kernels/cpu/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace loom::kernels::cpu {

void linear(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n,
            int64_t k) {
  if (m == 0 || n == 0) return;
  if (bias) {
    for (int64_t i = 0; i < m; ++i) std::copy(bias, bias + n, y + i * n);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, x, static_cast<int>(k), w, static_cast<int>(k),
              bias ? 1.0f : 0.0f, y, static_cast<int>(n));
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / dim) + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

void rope_neox(float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
               int64_t rotary_dim, const float* inv_freq, float scaling) {
  const int64_t half = rotary_dim / 2;
  std::vector<float> cos_t(half), sin_t(half);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      cos_t[i] = std::cos(angle) * scaling;
      sin_t[i] = std::sin(angle) * scaling;
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_t[i] - b * sin_t[i];
        v[i + half] = b * cos_t[i] + a * sin_t[i];
      }
    }
  }
}

void softmax(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * n;
    const float mx = *std::max_element(row, row + n);
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += (row[i] = std::exp(row[i] - mx));
    for (int64_t i = 0; i < n; ++i) row[i] /= sum;
  }
}

void silu_and_mul(const float* gate_up, float* out, int64_t m, int64_t inter) {
  for (int64_t r = 0; r < m; ++r) {
    const float* g = gate_up + r * 2 * inter;
    const float* u = g + inter;
    for (int64_t i = 0; i < inter; ++i) out[r * inter + i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void clamped_swiglu(const float* gate_up, float* out, int64_t m, int64_t inter, float alpha, float limit) {
  for (int64_t r = 0; r < m; ++r) {
    const float* g = gate_up + r * 2 * inter;
    const float* u = g + inter;
    for (int64_t i = 0; i < inter; ++i) {
      const float gate = std::min(g[i], limit), up = std::clamp(u[i], -limit, limit);
      out[r * inter + i] = (up + 1.0f) * gate / (1.0f + std::exp(-alpha * gate));
    }
  }
}

void topk(const float* x, int64_t rows, int64_t n, int64_t k, float* values, int32_t* indices) {
  std::vector<int32_t> order(n);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * n;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    for (int64_t j = 0; j < k; ++j) {
      indices[r * k + j] = order[j];
      values[r * k + j] = row[order[j]];
    }
  }
}

void grouped_topk(const float* x, int64_t rows, int64_t n, int64_t groups, int64_t topk_group, int64_t k,
                  float* values, int32_t* indices) {
  const int64_t size = n / groups;
  std::vector<float> best(groups), kept(n), best_kept(topk_group);
  std::vector<int32_t> kept_groups(topk_group);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * n;
    for (int64_t g = 0; g < groups; ++g) best[g] = *std::max_element(row + g * size, row + (g + 1) * size);
    topk(best.data(), 1, groups, topk_group, best_kept.data(), kept_groups.data());
    std::fill(kept.begin(), kept.end(), 0.0f);
    for (int32_t g : kept_groups) std::copy(row + g * size, row + (g + 1) * size, kept.begin() + g * size);
    topk(kept.data(), 1, n, k, values + r * k, indices + r * k);
  }
}

void embedding(const float* table, const int32_t* ids, float* out, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) std::copy(table + ids[i] * dim, table + (ids[i] + 1) * dim, out + i * dim);
}

int64_t kv_slot(const int32_t* page_table, int64_t page_size, int64_t pos) {
  return static_cast<int64_t>(page_table[pos / page_size]) * page_size + pos % page_size;
}

void write_kv(const PagedKv& kv, const int32_t* page_table, int64_t start_pos, int64_t tokens,
              const float* k, const float* v) {
  const int64_t krow = kv.kv_heads * kv.k_dim, vrow = kv.kv_heads * kv.v_dim;
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t s = kv_slot(page_table, kv.page_size, start_pos + t);
    std::copy(k + t * krow, k + (t + 1) * krow, kv.k + s * krow);
    std::copy(v + t * vrow, v + (t + 1) * vrow, kv.v + s * vrow);
  }
}

void paged_attention(const float* q, int64_t tokens, int64_t q_heads, const PagedKv& kv,
                     const int32_t* page_table, int64_t start_pos, float scale,
                     int64_t sliding_window, const float* sinks, float* out) {
  const int64_t group = q_heads / kv.kv_heads;
  const int64_t krow = kv.kv_heads * kv.k_dim, vrow = kv.kv_heads * kv.v_dim;
  std::vector<float> scores;
  std::vector<int64_t> slots;
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t pos = start_pos + t;
    const int64_t lo = sliding_window > 0 ? std::max<int64_t>(0, pos - sliding_window + 1) : 0;
    const int64_t n = pos - lo + 1;
    slots.resize(n);
    for (int64_t j = 0; j < n; ++j) slots[j] = kv_slot(page_table, kv.page_size, lo + j);
    scores.resize(n);
    for (int64_t h = 0; h < q_heads; ++h) {
      const int64_t kvh = h / group;
      const float* qv = q + (t * q_heads + h) * kv.k_dim;
      float mx = sinks ? sinks[h] : -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float* kp = kv.k + slots[j] * krow + kvh * kv.k_dim;
        float dot = 0;
        for (int64_t d = 0; d < kv.k_dim; ++d) dot += qv[d] * kp[d];
        scores[j] = dot * scale;
        mx = std::max(mx, scores[j]);
      }
      float denom = sinks ? std::exp(sinks[h] - mx) : 0.0f;
      for (int64_t j = 0; j < n; ++j) denom += (scores[j] = std::exp(scores[j] - mx));
      float* o = out + (t * q_heads + h) * kv.v_dim;
      std::fill(o, o + kv.v_dim, 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float p = scores[j] / denom;
        const float* vp = kv.v + slots[j] * vrow + kvh * kv.v_dim;
        for (int64_t d = 0; d < kv.v_dim; ++d) o[d] += p * vp[d];
      }
    }
  }
}

}  // namespace loom::kernels::cpu
