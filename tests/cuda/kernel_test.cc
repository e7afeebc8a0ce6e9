// Each CUDA kernel against the CPU reference (layers::ops on f32) on fresh random inputs, at
// awkward sizes (1 token, odd lengths, sizes that are not multiples of the tiles), writing into
// poisoned outputs. Metric: relative L2 error (cuda_test_util.h), bound kBf16Kernel = 1e-2
// unless a test states another; copies and index outputs must match exactly.
#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>

#include "cuda/cuda_test_util.h"
#include "cuda/paged_batch.h"
#include "loom/kernels/cuda/kernels.h"
#include "loom/layers/ops.h"
#include "loom/model/context.h"

using namespace loom;
using namespace loom::testing;
namespace kc = loom::kernels::cuda;
namespace ops = loom::layers::ops;

namespace {

cudaStream_t stream() { return loom::cuda::current_stream(0); }

Tensor ids_host(const std::vector<int32_t>& v) { return Tensor::from_ints(v, {static_cast<int64_t>(v.size())}); }

}  // namespace

TEST(CudaKernels, EmbeddingAndGatherCopyRowsExactly) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  for (auto [vocab, dim, n] : {std::tuple{37, 40, 1}, {1000, 72, 7}, {50, 13, 130}}) {
    const Tensor table = rand_host({vocab, dim}, 1.0f, rng);
    std::vector<int32_t> ids(n);
    for (auto& i : ids) i = static_cast<int32_t>(rng() % vocab);
    const Tensor ref = ops::embedding(table, ids_host(ids));
    const Tensor dev_ids = ids_host(ids).to(Device::cuda(0));
    Tensor out = poisoned({n, dim}, DType::bf16);
    kc::embedding(to_gpu_bf16(table).data_ptr(), dev_ids.data<int32_t>(), out.data_ptr(), n, dim, vocab, stream());
    EXPECT_EQ(host_values(out), ref.to_float_vector()) << vocab << "x" << dim;
    Tensor gathered = poisoned({n, dim}, DType::bf16);
    kc::gather_rows(to_gpu_bf16(table).data_ptr(), dev_ids.data<int32_t>(), gathered.data_ptr(), n, dim, stream());
    EXPECT_EQ(host_values(gathered), ref.to_float_vector());
  }
}

TEST(CudaKernels, RmsNormWithAndWithoutResidual) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(2);
  for (auto [rows, dim] : {std::pair{1, 40}, {7, 72}, {33, 2048}, {5, 1003}}) {
    const Tensor x = rand_host({rows, dim}, 2.0f, rng), res = rand_host({rows, dim}, 2.0f, rng);
    const Tensor w = rand_host({dim}, 1.0f, rng);
    const float eps = 1e-6f;
    Tensor out = poisoned({rows, dim}, DType::bf16);
    kc::rms_norm(to_gpu_bf16(x).data_ptr(), nullptr, to_gpu_bf16(w).data_ptr(), out.data_ptr(), rows, dim, eps,
                 stream());
    EXPECT_LT(rel_error(host_values(out), ops::rms_norm(x, w, eps).to_float_vector()), kBf16Kernel) << dim;

    Tensor res_cpu = res.clone();
    const Tensor ref = ops::add_rms_norm(res_cpu, x, w, eps);
    Tensor res_gpu = to_gpu_bf16(res);
    Tensor out2 = poisoned({rows, dim}, DType::bf16);
    kc::rms_norm(to_gpu_bf16(x).data_ptr(), res_gpu.data_ptr(), to_gpu_bf16(w).data_ptr(), out2.data_ptr(), rows, dim,
                 eps, stream());
    EXPECT_LT(rel_error(host_values(out2), ref.to_float_vector()), kBf16Kernel) << dim;
    EXPECT_LT(rel_error(host_values(res_gpu), res_cpu.to_float_vector()), kBf16Kernel) << dim;
  }
}

TEST(CudaKernels, QkNormRopeAtRandomPositions) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  // Head sizes 64, 128 and 256 with whole rotation take the kernel that holds a head in registers
  // (a warp per token, or per slice of its heads below 16K tokens: 1 token in 9 slices, 37 in 3,
  // 2,100 in 1); the others the general kernel (fewer than 128 tokens split each token's heads
  // over blocks of 8; 130 keeps a block per token). `norms`: false as in MLA's rotary part.
  for (auto [tokens, hq, hk, d, rot, norms] :
       {std::tuple{1, 4, 2, 8, 8, true}, {5, 8, 1, 24, 24, true}, {37, 4, 4, 128, 128, true}, {9, 6, 3, 32, 16, true},
        {1, 32, 4, 128, 128, true}, {130, 12, 2, 64, 64, true}, {2100, 7, 1, 128, 128, true},
        {300, 5, 3, 256, 256, true}, {17, 16, 1, 64, 64, false}, {40, 3, 2, 40, 24, false}}) {
    SCOPED_TRACE(::testing::Message() << "tokens " << tokens << " heads " << hq << "+" << hk << " d " << d << " rot "
                                      << rot << (norms ? "" : ", no norms"));
    Tensor q = rand_host({tokens, hq, d}, 2.0f, rng), k = rand_host({tokens, hk, d}, 2.0f, rng);
    const Tensor qn = rand_host({d}, 1.0f, rng), kn = rand_host({d}, 1.0f, rng);
    std::vector<float> inv(rot / 2);
    for (int i = 0; i < rot / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / rot);
    ops::Rope rope_cpu{Tensor::from_floats(inv, {rot / 2}), rot, 1.0f};
    ops::Rope rope_gpu{rope_cpu.inv_freq.to(Device::cuda(0)), rot, 1.0f};
    layers::ForwardContext ctx;
    for (int t = 0; t < tokens; ++t) ctx.h_positions.push_back(static_cast<int32_t>(rng() % 4000));
    ctx.positions = ids_host(ctx.h_positions).to(Device::cuda(0));
    Tensor qg = to_gpu_bf16(q), kg = to_gpu_bf16(k);
    const Tensor qng = to_gpu_bf16(qn), kng = to_gpu_bf16(kn);
    ops::qk_norm_rope(q, k, norms ? &qn : nullptr, norms ? &kn : nullptr, 1e-6f, rope_cpu, ctx);
    ops::qk_norm_rope(qg, kg, norms ? &qng : nullptr, norms ? &kng : nullptr, 1e-6f, rope_gpu, ctx);
    EXPECT_LT(rel_error(host_values(qg), q.to_float_vector()), kBf16Kernel);
    EXPECT_LT(rel_error(host_values(kg), k.to_float_vector()), kBf16Kernel);
  }
}

TEST(CudaKernels, SiluAndMul) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  for (auto [rows, inter] : {std::pair{1, 20}, {9, 768}, {130, 97}}) {
    const Tensor gu = rand_host({rows, 2 * inter}, 4.0f, rng);
    Tensor out = poisoned({rows, inter}, DType::bf16);
    kc::silu_and_mul(to_gpu_bf16(gu).data_ptr(), out.data_ptr(), rows, inter, stream());
    EXPECT_LT(rel_error(host_values(out), ops::silu_and_mul(gu).to_float_vector()), kBf16Kernel);
  }
}

TEST(CudaKernels, LinearThroughCublas) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  for (auto [m, n, k] : {std::tuple{1, 33, 40}, {7, 2048, 72}, {130, 96, 2048}}) {
    const Tensor x = rand_host({m, k}, 1.0f, rng), w = rand_host({n, k}, 0.1f, rng);
    const Tensor y = ops::linear(to_gpu_bf16(x), to_gpu_bf16(w));
    EXPECT_LT(rel_error(host_values(y), ops::linear(x, w).to_float_vector()), kBf16Kernel);
  }
}

TEST(CudaKernels, LinearWithBias) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (auto [m, n, k] : {std::tuple{1, 33, 40}, {7, 64, 64}, {130, 96, 2048}}) {
    const Tensor x = rand_host({m, k}, 1.0f, rng), w = rand_host({n, k}, 0.1f, rng), b = rand_host({n}, 1.0f, rng);
    const Tensor bg = to_gpu_bf16(b);
    const Tensor y = ops::linear(to_gpu_bf16(x), to_gpu_bf16(w), &bg);
    EXPECT_LT(rel_error(host_values(y), ops::linear(x, w, &b).to_float_vector()), kBf16Kernel);
  }
}

// The decode GEMV (m <= kDecodeMaxRows): K and N off every tile size, poisoned output; ops::linear
// on the GPU picks it or cuBLAS (m = 16, K % 8 != 0) and both match the CPU.
TEST(CudaKernels, GemvMatchesTheCpuReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (int m : {1, 3, 7, 8})
    for (auto [n, k] : {std::pair{1, 8}, {77, 1000}, {1001, 2056}, {513, 72}}) {
      const Tensor x = rand_host({m, k}, 1.0f, rng), w = rand_host({n, k}, 0.1f, rng);
      const Tensor xg = to_gpu_bf16(x), wg = to_gpu_bf16(w);
      ASSERT_TRUE(kc::gemv_applies(m, k, xg.data_ptr(), wg.data_ptr()));
      Tensor y = poisoned({m, n}, DType::bf16);
      kc::gemv(xg.data_ptr(), wg.data_ptr(), y.data_ptr(), m, n, k, stream());
      EXPECT_LT(rel_error(host_values(y), ops::linear(x, w).to_float_vector()), kBf16Kernel)
          << "m " << m << " n " << n << " k " << k;
    }
  for (int m : {1, 3, 7, 16})
    for (auto [n, k] : {std::pair{33, 37}, {1001, 1000}}) {
      const Tensor x = rand_host({m, k}, 1.0f, rng), w = rand_host({n, k}, 0.1f, rng);
      const Tensor y = ops::linear(to_gpu_bf16(x), to_gpu_bf16(w));
      EXPECT_LT(rel_error(host_values(y), ops::linear(x, w).to_float_vector()), kBf16Kernel)
          << "ops::linear m " << m << " n " << n << " k " << k;
    }
}

// q, k and v of a decode step in one launch (ops::linears): weights of different heights, with
// and without biases, against the CPU; 16 rows fall back to one product per weight. At K 2048 the
// tall weight takes a warp a row and the short ones split K over warps, in one launch as alone.
TEST(CudaKernels, SeveralGemvsInOneLaunchMatchTheCpuReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(16);
  for (auto [m, k, tall] : {std::tuple{1, 1000, 512}, {3, 1000, 512}, {8, 1000, 512}, {16, 1000, 512},
                            {1, 2048, 4096}, {8, 2048, 4096}}) {
    const Tensor x = rand_host({m, k}, 1.0f, rng);
    const std::vector<Tensor> w = {rand_host({tall, k}, 0.1f, rng), rand_host({64, k}, 0.1f, rng),
                                   rand_host({77, k}, 0.1f, rng)};
    const Tensor b0 = rand_host({tall}, 1.0f, rng), b2 = rand_host({77}, 1.0f, rng);
    const std::vector<Tensor> ref = ops::linears(x, {&w[0], &w[1], &w[2]}, {&b0, nullptr, &b2});
    const Tensor xg = to_gpu_bf16(x), b0g = to_gpu_bf16(b0), b2g = to_gpu_bf16(b2);
    const std::vector<Tensor> wg = {to_gpu_bf16(w[0]), to_gpu_bf16(w[1]), to_gpu_bf16(w[2])};
    const std::vector<Tensor> got = ops::linears(xg, {&wg[0], &wg[1], &wg[2]}, {&b0g, nullptr, &b2g});
    ASSERT_EQ(got.size(), 3u);
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(got[j].shape(), ref[j].shape()) << "m " << m << " k " << k << " weight " << j;
      EXPECT_LT(rel_error(host_values(got[j]), ref[j].to_float_vector()), kBf16Kernel) << "m " << m << " k " << k << " weight " << j;
    }
    // Without biases each output equals its own GEMV exactly (same kernel, same order).
    const std::vector<Tensor> plain = ops::linears(xg, {&wg[0], &wg[1], &wg[2]});
    for (int j = 0; j < 3; ++j) EXPECT_EQ(host_values(plain[j]), host_values(ops::linear(xg, wg[j]))) << "m " << m << " k " << k;
  }
}

// The router GEMV and its top-k in one launch equal the two-launch path exactly (same logits,
// same experts, same weights), at every decode row count and at the fallback size.
TEST(CudaKernels, FusedRouterEqualsRouterThenTopk) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(17);
  for (auto [m, e, h, k, renorm] : {std::tuple{1, 128, 2048, 8, true}, {3, 60, 1000, 4, false}, {8, 8, 64, 2, true},
                                    {12, 128, 256, 8, true}}) {
    const Tensor x = to_gpu_bf16(rand_host({m, h}, 1.0f, rng)), w = to_gpu_bf16(rand_host({e, h}, 0.1f, rng));
    Tensor logits;
    const ops::Routing fused = ops::linear_route_topk_softmax(x, w, k, renorm, &logits);
    const Tensor two_step = ops::linear(x, w);
    const ops::Routing ref = ops::route_topk_softmax(two_step, k, renorm);
    EXPECT_EQ(host_values(logits), host_values(two_step)) << "m " << m << " E " << e;
    EXPECT_EQ(host_values(fused.ids), host_values(ref.ids)) << "m " << m << " E " << e;
    EXPECT_EQ(host_values(fused.weights), host_values(ref.weights)) << "m " << m << " E " << e;
    // Twice in a row: the completion counter was left at zero.
    const ops::Routing again = ops::linear_route_topk_softmax(x, w, k, renorm);
    EXPECT_EQ(host_values(again.ids), host_values(ref.ids));
  }
}

// A row's GEMV result must not depend on the rows beside it (a padded graph bucket vs eager).
// Both GEMV kernels of a launch (gemv_with: plain, and the weights preloaded into registers before
// the wait) give the same result bit for bit, and that is the CPU's within bf16; shapes of
// Qwen3-30B-A3B's o projection (1,024 blocks, more than one wave at 6 an SM), q/k/v (640) and
// router, and odd ones.
TEST(CudaKernels, GemvKernelsAgreeBitForBit) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(14);
  for (auto [n, k] : {std::pair{2048, 4096}, {1800, 4096}, {5120, 2048}, {128, 2048}, {77, 1000}, {1, 8}}) {
    const Tensor x = rand_host({1, k}, 1.0f, rng), w = rand_host({n, k}, 0.1f, rng);
    const Tensor xg = to_gpu_bf16(x), wg = to_gpu_bf16(w);
    Tensor ref = poisoned({1, n}, DType::bf16);
    kc::gemv_with(kc::GemvKernel::registers, xg.data_ptr(), wg.data_ptr(), ref.data_ptr(), 1, n, k, stream());
    const std::vector<float> want = host_values(ref);
    EXPECT_LT(rel_error(want, ops::linear(x, w).to_float_vector()), kBf16Kernel) << "n " << n << " k " << k;
    for (auto kernel : {kc::GemvKernel::automatic, kc::GemvKernel::plain}) {
      Tensor y = poisoned({1, n}, DType::bf16);
      kc::gemv_with(kernel, xg.data_ptr(), wg.data_ptr(), y.data_ptr(), 1, n, k, stream());
      EXPECT_EQ(host_values(y), want) << "kernel " << static_cast<int>(kernel) << " n " << n << " k " << k;
    }
  }
}

TEST(CudaKernels, GemvRowsAreIndependentOfTheBatch) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  const int n = 300, k = 1024;
  const Tensor x = to_gpu_bf16(rand_host({8, k}, 1.0f, rng)), w = to_gpu_bf16(rand_host({n, k}, 0.1f, rng));
  Tensor all = poisoned({8, n}, DType::bf16), one = poisoned({1, n}, DType::bf16);
  kc::gemv(x.data_ptr(), w.data_ptr(), all.data_ptr(), 8, n, k, stream());
  kc::gemv(x.data_ptr(), w.data_ptr(), one.data_ptr(), 1, n, k, stream());
  const std::vector<float> a = host_values(all), o = host_values(one);
  EXPECT_EQ(std::vector<float>(a.begin(), a.begin() + n), o);
}

// The few-token expert path (no sort): gate/up + SiLU then down + weighted combine, against the
// CPU; local expert ranges that miss some slots; act scratch and output poisoned.
TEST(CudaKernels, MoeDecodeMatchesTheCpuReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  struct Case { int t, h, inter, e, k, begin, local; };
  for (const Case c : {Case{1, 2048, 768, 128, 8, 0, 128}, Case{3, 1000, 776, 16, 8, 0, 16},
                       Case{7, 72, 40, 12, 3, 6, 6}, Case{8, 64, 32, 8, 2, 0, 8}, Case{1, 40, 24, 5, 1, 2, 2}}) {
    SCOPED_TRACE(::testing::Message() << "t " << c.t << " h " << c.h << " I " << c.inter << " E " << c.e << " k " << c.k
                                      << " local [" << c.begin << ", +" << c.local << ")");
    const Tensor x = rand_host({c.t, c.h}, 1.0f, rng);
    const Tensor wgu = rand_host({c.local, 2 * c.inter, c.h}, 0.1f, rng);
    const Tensor wd = rand_host({c.local, c.h, c.inter}, 0.1f, rng);
    const ops::Routing r = ops::route_topk_softmax(rand_host({c.t, c.e}, 2.0f, rng), c.k, true);
    const Tensor ref = ops::moe_experts(x, r, wgu, wd, c.begin);

    const Device g = Device::cuda(0);
    const Tensor xg = to_gpu_bf16(x), wgug = to_gpu_bf16(wgu), wdg = to_gpu_bf16(wd);
    const Tensor ids = r.ids.to(g), wts = r.weights.to(g);
    ASSERT_TRUE(kc::moe_decode_applies(c.t, c.k, c.h, c.inter, xg.data_ptr(), wgug.data_ptr(), wdg.data_ptr()));
    Tensor act = poisoned({int64_t{c.t} * c.k, c.inter}, DType::bf16), out = poisoned({c.t, c.h}, DType::bf16);
    kc::moe_decode(xg.data_ptr(), ids.data<int32_t>(), wts.data<float>(), c.t, c.k, c.begin, c.local,
                   wgug.data_ptr(), wdg.data_ptr(), c.h, c.inter, act.data_ptr(), out.data_ptr(), stream());
    EXPECT_LT(rel_error(host_values(out), ref.to_float_vector()), 2e-2);
    // ops::moe_experts on the GPU takes this path for these shapes and gives the same answer.
    const Tensor via_ops = ops::moe_experts(xg, ops::Routing{wts, ids}, wgug, wdg, c.begin);
    EXPECT_LT(rel_error(host_values(via_ops), ref.to_float_vector()), 2e-2);
  }
}

// One token's experts (the down kernel at four hidden rows a warp) give what the same token gets in
// a batch of two (two rows a warp), bit for bit: a graph bucket and an eager step agree.
TEST(CudaKernels, MoeDecodeRowsAreIndependentOfTheBatch) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(31);
  for (auto [h, inter, e, k] : {std::tuple{2048, 768, 128, 8}, {72, 40, 12, 3}, {40, 24, 5, 1}}) {
    SCOPED_TRACE(::testing::Message() << "h " << h << " I " << inter << " E " << e << " k " << k);
    const Tensor x = to_gpu_bf16(rand_host({2, h}, 1.0f, rng));
    const Tensor wgu = to_gpu_bf16(rand_host({e, 2 * inter, h}, 0.1f, rng));
    const Tensor wd = to_gpu_bf16(rand_host({e, h, inter}, 0.1f, rng));
    const ops::Routing r = ops::route_topk_softmax(rand_host({2, e}, 2.0f, rng), k, true);
    const Tensor ids = r.ids.to(Device::cuda(0)), wts = r.weights.to(Device::cuda(0));
    std::vector<float> rows[2];
    for (int t : {2, 1}) {
      Tensor act = poisoned({int64_t{t} * k, inter}, DType::bf16), out = poisoned({t, h}, DType::bf16);
      kc::moe_decode(x.data_ptr(), ids.data<int32_t>(), wts.data<float>(), t, k, 0, e, wgu.data_ptr(), wd.data_ptr(),
                     h, inter, act.data_ptr(), out.data_ptr(), stream());
      rows[t - 1] = host_values(out);
    }
    EXPECT_EQ(rows[0], std::vector<float>(rows[1].begin(), rows[1].begin() + h));
  }
}

TEST(CudaKernels, RouterTopkPicksTheSameExperts) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(6);
  for (auto [t, e, k, renorm] : {std::tuple{1, 5, 1, true}, {33, 12, 3, false}, {70, 128, 8, true}}) {
    // Distinct logits (a shuffled ladder, exact in bf16) so the top-k is unambiguous.
    std::vector<float> v(t * e);
    for (int r = 0; r < t; ++r) {
      std::vector<int> perm(e);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int i = 0; i < e; ++i) v[r * e + i] = bf16_to_f32(f32_to_bf16(0.0625f * perm[i] - 2.0f));
    }
    const Tensor logits = Tensor::from_floats(v, {t, e});
    const ops::Routing ref = ops::route_topk_softmax(logits, k, renorm);
    Tensor w = poisoned({t, k}, DType::f32), ids = poisoned({t, k}, DType::i32);
    kc::route_topk(to_gpu_bf16(logits).data_ptr(), t, e, k, renorm, w.data<float>(), ids.data<int32_t>(), stream());
    EXPECT_EQ(host_values(ids), ref.ids.to_float_vector());
    EXPECT_LT(rel_error(host_values(w), ref.weights.to_float_vector()), 1e-5);
  }
}

// Equal logits go to the lower expert, as on the CPU: on both sides of the register top-k's limit
// (256 experts) and through the fused router, whose logits come from a GEMV.
TEST(CudaKernels, RouterTopkBreaksTiesTowardsTheLowerExpert) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(19);
  for (auto [t, e, k] : {std::tuple{3, 8, 2}, {5, 128, 8}, {4, 256, 8}, {3, 257, 8}, {2, 300, 6}}) {
    std::vector<float> v(t * e);
    for (float& x : v) x = std::array<float, 3>{-1.0f, 0.0f, 0.5f}[rng() % 3];
    const Tensor logits = Tensor::from_floats(v, {t, e});
    const ops::Routing ref = ops::route_topk_softmax(logits, k, true);
    Tensor w = poisoned({t, k}, DType::f32), ids = poisoned({t, k}, DType::i32);
    kc::route_topk(to_gpu_bf16(logits).data_ptr(), t, e, k, true, w.data<float>(), ids.data<int32_t>(), stream());
    EXPECT_EQ(host_values(ids), ref.ids.to_float_vector()) << "E " << e;
    EXPECT_LT(rel_error(host_values(w), ref.weights.to_float_vector()), 1e-5) << "E " << e;
  }
  // A router weight of zeros: every logit 0, the first k experts win.
  const int64_t h = 64, e = 128, k = 8;
  const Tensor x = to_gpu_bf16(rand_host({1, h}, 1.0f, rng));
  const Tensor w = to_gpu_bf16(Tensor::from_floats(std::vector<float>(e * h, 0.0f), {e, h}));
  const ops::Routing r = ops::linear_route_topk_softmax(x, w, k, true);
  EXPECT_EQ(host_values(r.ids), (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
  for (float p : host_values(r.weights)) EXPECT_FLOAT_EQ(p, 1.0f / k);
}

// DeepSeek's group-limited routing and routed scaling through ops (CUDA kernel vs CPU).
TEST(CudaKernels, GroupedRouterPicksTheSameExperts) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(14);
  struct Case { int t, e, groups, topk_group, k; bool renorm; float scale; };
  for (const Case c : {Case{5, 16, 4, 2, 3, true, 1.0f}, Case{33, 64, 8, 3, 6, false, 2.5f},
                       Case{70, 160, 8, 3, 6, false, 16.0f}, Case{9, 8, 1, 1, 2, false, 1.0f}}) {
    std::vector<float> v(c.t * c.e);  // a shuffled ladder, exact in bf16: no ties
    for (int r = 0; r < c.t; ++r) {
      std::vector<int> perm(c.e);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int i = 0; i < c.e; ++i) v[r * c.e + i] = bf16_to_f32(f32_to_bf16(0.03125f * perm[i] - 2.0f));
    }
    const Tensor logits = Tensor::from_floats(v, {c.t, c.e});
    const ops::GroupedTopk g{c.k, c.groups, c.topk_group, c.renorm, c.scale};
    const ops::Routing ref = ops::route_grouped_topk_softmax(logits, g);
    const ops::Routing got = ops::route_grouped_topk_softmax(to_gpu_bf16(logits), g);
    EXPECT_EQ(host_values(got.ids), ref.ids.to_float_vector()) << "E " << c.e << " groups " << c.groups;
    EXPECT_LT(rel_error(host_values(got.weights), ref.weights.to_float_vector()), 1e-5);
  }
}

// Latent attention's per-head products over strided views, and the strided copy into a slice.
TEST(CudaKernels, PerHeadLinearAndStridedCopy) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(15);
  for (auto [t, heads, k, n, pad] : {std::tuple{1, 4, 16, 32, 8}, {37, 16, 128, 512, 64}, {130, 3, 24, 40, 0}}) {
    const Tensor x = rand_host({t, heads, pad + k}, 1.0f, rng), w = rand_host({heads, n, k}, 0.1f, rng);
    const Tensor ref = ops::per_head_linear(x.narrow(2, pad, k), w);
    const Tensor xg = to_gpu_bf16(x);
    const Tensor got = ops::per_head_linear(xg.narrow(2, pad, k), to_gpu_bf16(w));
    EXPECT_LT(rel_error(host_values(got), ref.to_float_vector()), kBf16Kernel);
    // The product into the last n columns of a poisoned [t, heads, 8 + n] tensor.
    Tensor dst = poisoned({t, heads, 8 + n}, DType::bf16);
    Tensor slice = dst.narrow(2, 8, n);
    ops::copy_(slice, got);
    const std::vector<float> all = host_values(dst), mine = host_values(got);
    double worst = 0;
    for (int64_t i = 0; i < int64_t{t} * heads; ++i)
      for (int j = 0; j < n; ++j) worst = std::max(worst, std::abs(double(all[i * (8 + n) + 8 + j]) - mine[i * n + j]));
    EXPECT_EQ(worst, 0.0) << "copy_ into a slice";
  }
}

// The whole routed-expert path through the launchers: sort by expert, grouped GEMMs (both tile
// heights, 16-byte and element loads), SiLU, combine; intermediates and output poisoned.
TEST(CudaKernels, MoeExpertsMatchTheCpuReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  struct Case { int t, h, inter, e, k, begin, local; };
  // The last two have enough slots (>= 8,192) for the plan spread over blocks.
  for (const Case c : {Case{1, 40, 20, 5, 1, 0, 5}, Case{7, 64, 96, 16, 2, 0, 16}, Case{300, 2048, 768, 16, 8, 0, 16},
                       Case{130, 72, 24, 12, 4, 6, 6}, Case{3, 256, 64, 128, 8, 0, 128}, Case{33, 48, 80, 6, 3, 0, 6},
                       Case{1100, 64, 32, 16, 8, 0, 16}, Case{2500, 48, 40, 40, 4, 8, 24}}) {
    SCOPED_TRACE(::testing::Message() << "t " << c.t << " h " << c.h << " I " << c.inter << " E " << c.e << " k " << c.k
                                      << " local [" << c.begin << ", +" << c.local << ")");
    const Tensor x = rand_host({c.t, c.h}, 1.0f, rng);
    const Tensor wgu = rand_host({c.local, 2 * c.inter, c.h}, 0.1f, rng);
    const Tensor wd = rand_host({c.local, c.h, c.inter}, 0.1f, rng);
    const Tensor router = rand_host({c.t, c.e}, 2.0f, rng);
    const ops::Routing r = ops::route_topk_softmax(router, c.k, true);
    const Tensor ref = ops::moe_experts(x, r, wgu, wd, c.begin);

    const Device g = Device::cuda(0);
    const Tensor xg = to_gpu_bf16(x), wgug = to_gpu_bf16(wgu), wdg = to_gpu_bf16(wd);
    const Tensor ids = r.ids.to(g), wts = r.weights.to(g);
    const int64_t slots = int64_t{c.t} * c.k;
    const int bm = kc::moe_block_m(slots, c.local);
    const int64_t max_tiles = kc::moe_max_tiles(slots, c.local, bm);
    Tensor offsets = poisoned({c.local + 1}, DType::i32), st = poisoned({slots}, DType::i32);
    Tensor sw = poisoned({slots}, DType::f32), sp = poisoned({slots}, DType::i32);
    Tensor tiles = poisoned({2 * max_tiles + 1}, DType::i32);
    const int64_t scratch = kc::moe_plan_scratch_ints(slots, c.local);
    EXPECT_EQ(scratch > 0, slots >= 8192);
    const Tensor counts = poisoned({std::max<int64_t>(scratch, 1)}, DType::i32);
    kc::MoePlan plan{offsets.data<int32_t>(), st.data<int32_t>(),   sw.data<float>(),
                     sp.data<int32_t>(),      tiles.data<int32_t>(), tiles.data<int32_t>() + max_tiles,
                     tiles.data<int32_t>() + 2 * max_tiles, max_tiles, bm, scratch > 0 ? counts.data<int32_t>() : nullptr};
    kc::moe_plan(ids.data<int32_t>(), wts.data<float>(), c.t, c.k, c.begin, c.local, plan, stream());
    Tensor gu = poisoned({slots, 2 * c.inter}, DType::bf16), act = poisoned({slots, c.inter}, DType::bf16);
    Tensor y = poisoned({slots, c.h}, DType::bf16), out = poisoned({c.t, c.h}, DType::bf16);
    kc::moe_grouped_gemm(xg.data_ptr(), plan.sorted_token, wgug.data_ptr(), 2 * c.inter * c.h, 2 * c.inter, c.h,
                         gu.data_ptr(), nullptr, plan, stream());
    kc::silu_and_mul(gu.data_ptr(), act.data_ptr(), slots, c.inter, stream());
    kc::moe_grouped_gemm(act.data_ptr(), nullptr, wdg.data_ptr(), int64_t{c.h} * c.inter, c.h, c.inter, y.data_ptr(),
                         plan.sorted_weight, plan, stream());
    kc::moe_combine(y.data_ptr(), plan.slot_pos, c.t, c.k, c.h, out.data_ptr(), stream());
    const std::vector<float> got = host_values(out);
    EXPECT_LT(rel_error(got, ref.to_float_vector()), 2e-2);

    // The plan itself: offsets are the prefix sums of per-expert counts, every local slot placed once.
    const std::vector<float> off = host_values(offsets), pos = host_values(sp);
    const std::vector<float> token_of = host_values(st), weight_of = host_values(sw);
    const std::vector<float> id_host = r.ids.to_float_vector(), w_host = r.weights.to_float_vector();
    std::vector<int> count(c.local, 0), seen(slots, 0);
    for (int64_t i = 0; i < slots; ++i) {
      const int e = static_cast<int>(id_host[i]) - c.begin;
      if (e >= 0 && e < c.local) {
        ++count[e];
        ASSERT_GE(pos[i], off[e]);
        ASSERT_LT(pos[i], off[e + 1]);
        ASSERT_EQ(seen[static_cast<int>(pos[i])]++, 0);
        ASSERT_EQ(token_of[static_cast<int>(pos[i])], static_cast<float>(i / c.k)) << "slot " << i;
        ASSERT_EQ(weight_of[static_cast<int>(pos[i])], w_host[i]) << "slot " << i;
      } else {
        ASSERT_EQ(pos[i], -1.0f);
      }
    }
    for (int e = 0; e < c.local; ++e) EXPECT_EQ(off[e + 1] - off[e], count[e]);
  }
}

// gpt-oss's experts through ops::moe_experts: biases on both projections (or only gate_up's, as
// on MOE_TP ranks past the first), the clamped SwiGLU, a slice of the experts; decode and prefill sizes.
TEST(CudaKernels, BiasedExpertsWithClampedSwigluMatchTheCpuReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  struct Case { int t, h, inter, e, k, begin, local; bool down_bias; };
  for (const Case c : {Case{1, 64, 32, 4, 2, 0, 4, true}, Case{7, 64, 96, 16, 4, 4, 8, false},
                       Case{300, 256, 128, 32, 4, 0, 32, true}}) {
    SCOPED_TRACE(::testing::Message() << "t " << c.t << " E " << c.e << " local [" << c.begin << ", +" << c.local << ")");
    const Tensor x = rand_host({c.t, c.h}, 1.0f, rng);
    // Large enough weights that the clamps at ±7 engage.
    const Tensor wgu = rand_host({c.local, 2 * c.inter, c.h}, 1.0f, rng), wd = rand_host({c.local, c.h, c.inter}, 0.1f, rng);
    const Tensor bgu = rand_host({c.local, 2 * c.inter}, 2.0f, rng), bd = rand_host({c.local, c.h}, 1.0f, rng);
    const ops::Routing r = ops::route_topk_softmax(rand_host({c.t, c.e}, 2.0f, rng), c.k, true);
    ops::ExpertOptions o;
    o.gate_up_bias = &bgu;
    o.down_bias = c.down_bias ? &bd : nullptr;
    o.swiglu_alpha = 1.702f;
    o.swiglu_limit = 7.0f;
    const Tensor ref = ops::moe_experts(x, r, wgu, wd, c.begin, o);
    const Device g = Device::cuda(0);
    const Tensor bgug = to_gpu_bf16(bgu), bdg = to_gpu_bf16(bd);
    ops::ExpertOptions og = o;
    og.gate_up_bias = &bgug;
    og.down_bias = c.down_bias ? &bdg : nullptr;
    const Tensor got = ops::moe_experts(to_gpu_bf16(x), ops::Routing{r.weights.to(g), r.ids.to(g)}, to_gpu_bf16(wgu),
                                        to_gpu_bf16(wd), c.begin, og);
    EXPECT_LT(rel_error(host_values(got), ref.to_float_vector()), 2e-2);
  }
}

namespace {

// Paged caches with the same (bf16-rounded) random content on both sides and a shuffled page map.
struct PagedCase {
  std::vector<std::pair<int, int>> seqs;  // (start_pos, new tokens)
  int hq, hk, d, page_size;
  int window = 0;      // sliding window (0: none)
  bool sinks = false;  // gpt-oss's per-head sink logits
  int dv = 0;          // V's head dim when narrower than K's (latent attention); 0: d
  bool kernel_writes_kv = false;  // decode: the attention kernel stores the step's K/V itself
};

void run_attention_case(const PagedCase& pc, std::mt19937& rng) {
  int64_t pages_needed = 0;
  for (auto [start, n] : pc.seqs) pages_needed += (start + n + pc.page_size - 1) / pc.page_size;
  const int64_t pages = pages_needed + 1, slots = pages * pc.page_size;
  const int dv = pc.dv ? pc.dv : pc.d;
  const Tensor kc_host = rand_host({slots, pc.hk, pc.d}, 1.0f, rng), vc_host = rand_host({slots, pc.hk, dv}, 1.0f, rng);
  KvBuffers cpu_kv, gpu_kv;
  cpu_kv.page_size = gpu_kv.page_size = pc.page_size;
  cpu_kv.k.push_back(kc_host.clone());
  cpu_kv.v.push_back(vc_host.clone());
  gpu_kv.k.push_back(to_gpu_bf16(kc_host));
  gpu_kv.v.push_back(to_gpu_bf16(vc_host));
  std::vector<int32_t> free_pages(pages - 1);
  std::iota(free_pages.begin(), free_pages.end(), 1);
  std::shuffle(free_pages.begin(), free_pages.end(), rng);
  model::ForwardBatch batch;
  int64_t tokens = 0;
  for (auto [start, n] : pc.seqs) {
    model::SequenceInput s;
    s.start_pos = start;
    s.tokens.assign(n, 0);
    const int64_t np = (start + n + pc.page_size - 1) / pc.page_size;
    s.page_table.assign(free_pages.end() - np, free_pages.end());
    free_pages.resize(free_pages.size() - np);
    batch.seqs.push_back(s);
    tokens += n;
  }
  const Tensor q = rand_host({tokens, pc.hq, pc.d}, 1.0f, rng), k = rand_host({tokens, pc.hk, pc.d}, 1.0f, rng),
               v = rand_host({tokens, pc.hk, dv}, 1.0f, rng);
  const layers::ForwardContext cctx = model::make_context(batch, cpu_kv, Device::cpu());
  const layers::ForwardContext gctx = model::make_context(batch, gpu_kv, Device::cuda(0));
  ops::AttentionParams params;
  params.scale = 1.0f / std::sqrt(static_cast<float>(pc.d));
  params.sliding_window = pc.window;
  const Tensor sinks = rand_host({pc.hq}, 2.0f, rng), sinks_gpu = sinks.to(Device::cuda(0));
  if (pc.sinks) params.sinks = &sinks;
  const Tensor ref = ops::attention(q, k, v, 0, params, cctx);

  kc::PagedKvArgs kv{gpu_kv.k[0].data_ptr(), gpu_kv.v[0].data_ptr(), gctx.page_table.data<int32_t>(),
                     gctx.token_starts.data<int32_t>(), gctx.start_pos.data<int32_t>(), gctx.num_seqs,
                     gctx.max_pages, pc.page_size, pc.hk, pc.d, dv};
  const Tensor kg = to_gpu_bf16(k), vg = to_gpu_bf16(v), qg = to_gpu_bf16(q);
  if (!pc.kernel_writes_kv)
    kc::write_kv(kv, kg.data_ptr(), vg.data_ptr(), gctx.positions.data<int32_t>(), tokens, stream());
  int64_t max_new = 0;
  for (auto [start, n] : pc.seqs) max_new = std::max<int64_t>(max_new, n);
  const int splits = kc::attention_splits(gctx.num_seqs, pc.hk, gctx.decode_only);
  Tensor work = poisoned({std::max(splits, 1), tokens, pc.hq, dv + 1}, DType::f32);
  Tensor out = poisoned({tokens, pc.hq, dv}, DType::bf16);
  kc::attention(kv, qg.data_ptr(), out.data_ptr(), tokens, pc.hq, params.scale, max_new, splits, work.data<float>(),
                stream(), pc.window, pc.sinks ? sinks_gpu.data<float>() : nullptr,
                pc.kernel_writes_kv ? kg.data_ptr() : nullptr, pc.kernel_writes_kv ? vg.data_ptr() : nullptr);
  EXPECT_LT(rel_error(host_values(out), ref.to_float_vector()), kBf16Kernel)
      << "hq " << pc.hq << " hk " << pc.hk << " d " << pc.d << " splits " << splits << " window " << pc.window
      << " sinks " << pc.sinks << " dv " << dv << " kernel writes KV " << pc.kernel_writes_kv;
  EXPECT_LT(rel_error(host_values(gpu_kv.k[0]), cpu_kv.k[0].to_float_vector()), 1e-6) << "K cache written";
  EXPECT_LT(rel_error(host_values(gpu_kv.v[0]), cpu_kv.v[0].to_float_vector()), 1e-6) << "V cache written";
}

}  // namespace

TEST(CudaKernels, PrefillAttentionCausalVarlenWithPrefixes) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(8);
  const std::vector<std::pair<int, int>> seqs = {{0, 1}, {5, 33}, {0, 130}, {70, 7}, {0, 67}};
  for (auto [hq, hk, d] : {std::tuple{4, 2, 8}, {8, 1, 24}, {4, 4, 32}, {32, 4, 128}, {6, 3, 16}})
    run_attention_case({seqs, hq, hk, d, 16}, rng);
  run_attention_case({{{0, 200}}, 4, 2, 64, 1}, rng);  // page size 1
}

TEST(CudaKernels, DecodeAttentionSplitsLongContexts) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  const std::vector<std::pair<int, int>> seqs = {{0, 1}, {300, 1}, {1000, 1}, {63, 1}};
  for (bool kernel_writes_kv : {false, true}) {
    for (auto [hq, hk, d] : {std::tuple{4, 2, 8}, {8, 1, 24}, {32, 4, 128}, {4, 4, 16}})
      run_attention_case({seqs, hq, hk, d, 16, 0, false, 0, kernel_writes_kv}, rng);
    run_attention_case({{{2047, 1}}, 16, 2, 128, 16, 0, false, 0, kernel_writes_kv}, rng);
    run_attention_case({{{5, 1}}, 32, 4, 128, 16, 0, false, 0, kernel_writes_kv}, rng);  // key 5 is a new one
  }
}

namespace {

// The decode kernel with the q/k norm and RoPE folded in (kc::QkNormRope) against qk_norm_rope's
// kernel then the same attention: identical outputs and caches, bit for bit (both do the same
// operations in the same order, through norm_rope.cuh's explicitly rounded arithmetic).
void check_folded_qk_norm_rope(const std::vector<std::pair<int, int>>& seqs, int hq, int hk, int d, bool norm,
                               float scaling, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << "hq " << hq << " hk " << hk << " d " << d << " norm " << norm << " scaling "
                                    << scaling);
  const int page_size = 16;
  const int64_t pages = loom::testing::pages_for(seqs, page_size), slots = pages * page_size;
  const Tensor k_cache = rand_host({slots, hk, d}, 1.0f, rng), v_cache = rand_host({slots, hk, d}, 1.0f, rng);
  KvBuffers kv1, kv2;  // the same cache twice: one per path
  kv1.page_size = kv2.page_size = page_size;
  for (KvBuffers* b : {&kv1, &kv2}) {
    b->k.push_back(to_gpu_bf16(k_cache));
    b->v.push_back(to_gpu_bf16(v_cache));
  }
  const model::ForwardBatch batch = loom::testing::shuffled_page_batch(seqs, pages, page_size, rng);
  const int64_t tokens = static_cast<int64_t>(seqs.size());
  const layers::ForwardContext ctx = model::make_context(batch, kv1, Device::cuda(0));
  const Tensor q = to_gpu_bf16(rand_host({tokens, hq, d}, 1.0f, rng));
  const Tensor k = to_gpu_bf16(rand_host({tokens, hk, d}, 1.0f, rng));
  const Tensor v = to_gpu_bf16(rand_host({tokens, hk, d}, 1.0f, rng));
  const Tensor q_norm = to_gpu_bf16(rand_host({d}, 1.0f, rng)), k_norm = to_gpu_bf16(rand_host({d}, 1.0f, rng));
  std::vector<float> freq(d / 2);
  for (int i = 0; i < d / 2; ++i) freq[i] = std::pow(1e6f, -2.0f * i / d);
  Tensor inv_freq = Tensor::empty({d / 2}, DType::f32);
  std::copy(freq.begin(), freq.end(), inv_freq.data<float>());
  inv_freq = inv_freq.to(Device::cuda(0));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d)), eps = 1e-6f;
  const int splits = kc::attention_splits(ctx.num_seqs, hk, true);
  auto kv_args = [&](KvBuffers& b) {
    return kc::PagedKvArgs{b.k[0].data_ptr(), b.v[0].data_ptr(), ctx.page_table.data<int32_t>(),
                           ctx.token_starts.data<int32_t>(), ctx.start_pos.data<int32_t>(), ctx.num_seqs,
                           ctx.max_pages, page_size, hk, d, d};
  };
  Tensor work = poisoned({splits, tokens, hq, d + 1}, DType::f32);
  // Two kernels: qk_norm_rope on copies, then attention storing the rotated key.
  const Tensor q1 = q.clone(), k1 = k.clone();
  kc::qk_norm_rope(q1.data_ptr(), k1.data_ptr(), norm ? q_norm.data_ptr() : nullptr, norm ? k_norm.data_ptr() : nullptr,
                   ctx.positions.data<int32_t>(), inv_freq.data<float>(), tokens, hq, hk, d, d, scaling, eps, stream());
  Tensor out1 = poisoned({tokens, hq, d}, DType::bf16), out2 = poisoned({tokens, hq, d}, DType::bf16);
  kc::attention(kv_args(kv1), q1.data_ptr(), out1.data_ptr(), tokens, hq, scale, 1, splits, work.data<float>(),
                stream(), 0, nullptr, k1.data_ptr(), v.data_ptr());
  // Folded: the raw projections.
  ASSERT_TRUE(kc::attention_fuses_qk_norm_rope(hq, hk, d, d, d));
  const kc::QkNormRope fold{norm ? q_norm.data_ptr() : nullptr, norm ? k_norm.data_ptr() : nullptr,
                            inv_freq.data<float>(), scaling, eps};
  kc::attention(kv_args(kv2), q.data_ptr(), out2.data_ptr(), tokens, hq, scale, 1, splits, work.data<float>(),
                stream(), 0, nullptr, k.data_ptr(), v.data_ptr(), &fold);
  auto differing = [](const Tensor& a, const Tensor& b) {
    const std::vector<float> x = host_values(a), y = host_values(b);
    int64_t n = 0;
    for (size_t i = 0; i < x.size(); ++i) n += std::memcmp(&x[i], &y[i], sizeof(float)) != 0;
    return n;
  };
  EXPECT_EQ(differing(out1, out2), 0) << "attention outputs";
  EXPECT_EQ(differing(kv1.k[0], kv2.k[0]), 0) << "K caches (the rotated key stored)";
  EXPECT_EQ(differing(kv1.v[0], kv2.v[0]), 0) << "V caches";
  EXPECT_EQ(differing(q, q1) > 0, true) << "the unfolded path did rotate q (the test compares something)";
}

}  // namespace

// Decode contexts inside one key tile and across many, the new key first in its tile and last;
// Qwen3's heads (32 over 4, d 128), gpt-oss-like (64 over 8, d 64, no norm, a YaRN-style scale).
TEST(CudaKernels, DecodeAttentionFoldsTheQkNormAndRope) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(21);
  const std::vector<std::pair<int, int>> seqs = {{0, 1}, {5, 1}, {63, 1}, {64, 1}, {300, 1}, {1000, 1}, {2047, 1}};
  check_folded_qk_norm_rope(seqs, 32, 4, 128, true, 1.0f, rng);
  check_folded_qk_norm_rope({{1023, 1}}, 32, 4, 128, true, 1.0f, rng);  // one sequence: bs 1's 32 splits
  check_folded_qk_norm_rope(seqs, 64, 8, 64, false, 1.25f, rng);
  check_folded_qk_norm_rope(seqs, 16, 1, 128, true, 1.0f, rng);  // a group of 16: every padding row real
}

// gpt-oss's attention: sliding windows shorter and longer than a key tile, sinks, both together;
// prefill (one split) and decode (split keys, the sink joins in the merge).
TEST(CudaKernels, AttentionWithSlidingWindowAndSinks) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(10);
  const std::vector<std::pair<int, int>> prefill = {{0, 1}, {5, 33}, {0, 130}, {70, 7}, {0, 67}};
  const std::vector<std::pair<int, int>> decode = {{0, 1}, {300, 1}, {1000, 1}, {63, 1}};
  for (const auto& seqs : {prefill, decode})
    for (auto [window, sinks] : {std::pair{8, false}, {0, true}, {8, true}, {100, true}, {1, false}})
      for (auto [hq, hk, d] : {std::tuple{4, 2, 16}, {8, 1, 64}})
        run_attention_case({seqs, hq, hk, d, 16, window, sinks, 0, seqs == decode}, rng);
}

// Latent attention's shapes (DeepSeek's absorbed MLA: every head over one K/V head, V the latent
// part of K): K and V head dims differ, prefill and split-K decode.
TEST(CudaKernels, AttentionWithNarrowerValues) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  const std::vector<std::pair<int, int>> prefill = {{0, 1}, {5, 33}, {0, 130}, {70, 7}};
  const std::vector<std::pair<int, int>> decode = {{0, 1}, {300, 1}, {1000, 1}};
  for (const auto& seqs : {prefill, decode})
    for (auto [hq, d, dv] : {std::tuple{4, 40, 32}, {16, 128, 64}, {8, 72, 64}, {4, 64, 16}})
      run_attention_case({seqs, hq, 1, d, 16, 0, false, dv, seqs == decode}, rng);
}

TEST(CudaKernels, GreedySelectionIsArgmaxWithLowestIdOnTies) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(10);
  for (auto [rows, vocab] : {std::pair{1, 7}, {5, 2048}, {3, 151936}}) {
    Tensor l = rand_host({rows, vocab}, 4.0f, rng);
    float* p = l.data<float>();
    for (int r = 0; r < rows; ++r) {  // plant a tie for the maximum: the lower id must win
      const int a = static_cast<int>(rng() % vocab), b = static_cast<int>(rng() % vocab);
      p[r * vocab + a] = p[r * vocab + b] = 8.0f;
    }
    Tensor out = poisoned({rows}, DType::i32);
    kc::select_tokens(to_gpu_bf16(l).data_ptr(), rows, vocab, 0.0f, 0, 0, out.data<int32_t>(), stream());
    const std::vector<float> got = host_values(out);
    for (int r = 0; r < rows; ++r) {
      int best = 0;
      for (int i = 1; i < vocab; ++i)
        if (p[r * vocab + i] > p[r * vocab + best]) best = i;
      EXPECT_EQ(static_cast<int>(got[r]), best) << "row " << r;
    }
  }
}

// select_tokens reads rows of vocab % 8 == 0 at 16-byte alignment 8 logits a load, others one at
// a time: the same rows through both paths (the second copy one element off alignment) must pick
// the same tokens, greedy (with planted ties) and with Gumbel noise.
TEST(CudaKernels, SelectionIsTheSameOnTheVectorAndScalarPaths) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(31);
  for (auto [rows, vocab] : {std::pair{64, 2048}, {3, 151936}}) {
    Tensor l = rand_host({rows, vocab}, 4.0f, rng);
    for (int r = 0; r < rows; ++r) {
      const int a = static_cast<int>(rng() % vocab), b = static_cast<int>(rng() % vocab);
      l.data<float>()[r * vocab + a] = l.data<float>()[r * vocab + b] = 9.0f;
    }
    const Tensor aligned = to_gpu_bf16(l);
    Tensor shifted = Tensor::empty({int64_t{rows} * vocab + 1}, DType::bf16, Device::cuda(0));
    ASSERT_EQ(cudaMemcpy(static_cast<uint16_t*>(shifted.data_ptr()) + 1, aligned.data_ptr(),
                         size_t{2} * rows * vocab, cudaMemcpyDeviceToDevice),
              cudaSuccess);
    for (float temperature : {0.0f, 0.8f}) {
      Tensor a = poisoned({rows}, DType::i32), b = poisoned({rows}, DType::i32);
      kc::select_tokens(aligned.data_ptr(), rows, vocab, temperature, 7, 3, a.data<int32_t>(), stream());
      kc::select_tokens(static_cast<uint16_t*>(shifted.data_ptr()) + 1, rows, vocab, temperature, 7, 3,
                        b.data<int32_t>(), stream());
      EXPECT_EQ(host_values(a), host_values(b)) << "vocab " << vocab << " temperature " << temperature;
    }
  }
}

TEST(CudaKernels, SampledSelectionFollowsTheSoftmax) {
  SKIP_WITHOUT_GPU();
  const int rows = 40000, vocab = 4;
  const float probs[vocab] = {0.1f, 0.2f, 0.3f, 0.4f};
  std::vector<float> v(rows * vocab);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < vocab; ++i) v[r * vocab + i] = std::log(probs[i]) + 3.0f;
  const Tensor l = to_gpu_bf16(Tensor::from_floats(v, {rows, vocab}));
  Tensor a = poisoned({rows}, DType::i32), b = poisoned({rows}, DType::i32), c = poisoned({rows}, DType::i32);
  kc::select_tokens(l.data_ptr(), rows, vocab, 1.0f, 42, 0, a.data<int32_t>(), stream());
  kc::select_tokens(l.data_ptr(), rows, vocab, 1.0f, 42, 0, b.data<int32_t>(), stream());
  kc::select_tokens(l.data_ptr(), rows, vocab, 1.0f, 42, 1, c.data<int32_t>(), stream());
  const std::vector<float> ha = host_values(a), hb = host_values(b), hc = host_values(c);
  EXPECT_EQ(ha, hb) << "same seed and offset: same tokens";
  EXPECT_NE(ha, hc) << "another offset: other draws";
  std::vector<double> freq(vocab, 0);
  for (float t : ha) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, vocab);
    freq[static_cast<int>(t)] += 1.0 / rows;
  }
  // bf16 logits shift the probabilities by < 0.5%; 40000 draws have a standard error < 0.3%.
  for (int i = 0; i < vocab; ++i) EXPECT_NEAR(freq[i], probs[i], 0.015) << "token " << i;
}
