// The CPU reference kernels against direct formulas on random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "loom/kernels/cpu/ops.h"

namespace k = loom::kernels::cpu;

namespace {

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

TEST(CpuOps, LinearMatchesLoops) {
  for (auto [m, n, kk] : {std::tuple{1, 1, 1}, {3, 5, 7}, {17, 33, 65}}) {
    auto x = randn(m * kk, 1), w = randn(n * kk, 2), b = randn(n, 3);
    std::vector<float> y(m * n, NAN);
    k::linear(x.data(), w.data(), b.data(), y.data(), m, n, kk);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = b[j];
        for (int l = 0; l < kk; ++l) s += static_cast<double>(x[i * kk + l]) * w[j * kk + l];
        EXPECT_NEAR(y[i * n + j], s, 1e-4 * (1 + std::abs(s)));
      }
  }
}

TEST(CpuOps, RmsNormHasUnitRmsBeforeTheWeight) {
  const int rows = 4, dim = 37;
  auto x = randn(rows * dim, 4);
  std::vector<float> w(dim, 1.0f), y(rows * dim);
  k::rms_norm(x.data(), w.data(), y.data(), rows, dim, 0.0f);
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += y[r * dim + i] * y[r * dim + i];
    EXPECT_NEAR(std::sqrt(ss / dim), 1.0, 1e-5);
  }
}

TEST(CpuOps, RopeRotatesPairsAndIsIdentityAtPositionZero) {
  const int heads = 3, dim = 8, half = dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / dim);
  auto x = randn(2 * heads * dim, 5);
  auto y = x;
  const int32_t pos[2] = {0, 5};
  k::rope_neox(y.data(), pos, 2, heads, dim, dim, inv.data(), 1.0f);
  for (int i = 0; i < heads * dim; ++i) EXPECT_FLOAT_EQ(y[i], x[i]);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < half; ++i) {
      const float* a = &x[(heads + h) * dim];
      const float* b = &y[(heads + h) * dim];
      const float c = std::cos(5 * inv[i]), s = std::sin(5 * inv[i]);
      EXPECT_NEAR(b[i], a[i] * c - a[i + half] * s, 1e-5);
      EXPECT_NEAR(b[i + half], a[i + half] * c + a[i] * s, 1e-5);
    }
}

TEST(CpuOps, TopkIsDescendingWithLowerIndexOnTies) {
  const float x[6] = {1, 3, 3, 0, 2, 3};
  float v[3];
  int32_t idx[3];
  k::topk(x, 1, 6, 3, v, idx);
  EXPECT_EQ(std::vector<int32_t>(idx, idx + 3), (std::vector<int32_t>{1, 2, 5}));
  EXPECT_EQ(v[0], 3.0f);
}

// DeepSeek's group_limited_greedy by hand: 8 experts in 4 groups of 2, the best 2 groups, top 3.
TEST(CpuOps, GroupedTopkPicksWithinTheBestGroups) {
  const float x[8] = {0.05f, 0.30f, /**/ 0.20f, 0.02f, /**/ 0.25f, 0.01f, /**/ 0.10f, 0.07f};
  // Group maxima 0.30, 0.20, 0.25, 0.10: groups 0 and 2 stay, so expert 2 (0.20, third overall) is out.
  float v[3];
  int32_t idx[3];
  k::grouped_topk(x, 1, 8, 4, 2, 3, v, idx);
  EXPECT_EQ(std::vector<int32_t>(idx, idx + 3), (std::vector<int32_t>{1, 4, 0}));
  EXPECT_EQ(std::vector<float>(v, v + 3), (std::vector<float>{0.30f, 0.25f, 0.05f}));
  // All groups kept: plain top-k.
  k::grouped_topk(x, 1, 8, 4, 4, 3, v, idx);
  EXPECT_EQ(std::vector<int32_t>(idx, idx + 3), (std::vector<int32_t>{1, 4, 2}));
  // More experts asked for than the kept groups hold: the rest are dropped experts' zeros.
  float w[5];
  int32_t id5[5];
  k::grouped_topk(x, 1, 8, 4, 1, 5, w, id5);  // group 0 only
  EXPECT_EQ(std::vector<int32_t>(id5, id5 + 2), (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(std::vector<float>(w + 2, w + 5), (std::vector<float>{0, 0, 0}));
}

TEST(CpuOps, SoftmaxRowsSumToOne) {
  auto x = randn(5 * 9, 6);
  k::softmax(x.data(), 5, 9);
  for (int r = 0; r < 5; ++r) EXPECT_NEAR(std::accumulate(&x[r * 9], &x[r * 9 + 9], 0.0), 1.0, 1e-6);
}

// Paged attention with scattered pages equals dense causal attention computed directly.
TEST(CpuOps, PagedAttentionEqualsDenseCausalAttention) {
  for (auto [q_heads, kv_heads, window, use_sinks] :
       {std::tuple{4, 2, 0, false}, {3, 3, 0, false}, {8, 1, 5, false}, {4, 2, 3, true}}) {
    const int64_t dim = 6, vdim = 5, page = 4, len = 19, pages = 8;
    std::vector<int32_t> table = {6, 2, 7, 1, 4};  // scattered pages covering 20 positions
    std::vector<float> kc(pages * page * kv_heads * dim, NAN), vc(pages * page * kv_heads * vdim, NAN);
    const k::PagedKv kv{kc.data(), vc.data(), page, kv_heads, dim, vdim};
    auto q = randn(len * q_heads * dim, 7), kk = randn(len * kv_heads * dim, 8), v = randn(len * kv_heads * vdim, 9);
    auto sinks = randn(q_heads, 10);
    // Prefill 12 tokens, then 7 more in a second chunk.
    std::vector<float> out(len * q_heads * vdim, NAN);
    for (auto [start, n] : {std::pair<int64_t, int64_t>{0, 12}, {12, 7}}) {
      k::write_kv(kv, table.data(), start, n, &kk[start * kv_heads * dim], &v[start * kv_heads * vdim]);
      k::paged_attention(&q[start * q_heads * dim], n, q_heads, kv, table.data(), start, 0.4f, window,
                         use_sinks ? sinks.data() : nullptr, &out[start * q_heads * vdim]);
    }
    for (int64_t t = 0; t < len; ++t)
      for (int64_t h = 0; h < q_heads; ++h) {
        const int64_t g = h / (q_heads / kv_heads);
        const int64_t lo = window ? std::max<int64_t>(0, t - window + 1) : 0;
        std::vector<double> p;
        double mx = use_sinks ? sinks[h] : -1e30;
        for (int64_t j = lo; j <= t; ++j) {
          double s = 0;
          for (int64_t d = 0; d < dim; ++d) s += q[(t * q_heads + h) * dim + d] * kk[(j * kv_heads + g) * dim + d];
          p.push_back(0.4 * s);
          mx = std::max(mx, p.back());
        }
        double denom = use_sinks ? std::exp(sinks[h] - mx) : 0;
        for (auto& s : p) denom += (s = std::exp(s - mx));
        for (int64_t d = 0; d < vdim; ++d) {
          double o = 0;
          for (int64_t j = lo; j <= t; ++j) o += p[j - lo] / denom * v[(j * kv_heads + g) * vdim + d];
          EXPECT_NEAR(out[(t * q_heads + h) * vdim + d], o, 1e-5) << t << " " << h << " " << d;
        }
      }
  }
}

}  // namespace
