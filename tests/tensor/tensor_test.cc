#include <cmath>

#include <gtest/gtest.h>

#include "loom/tensor/tensor.h"

using namespace loom;

TEST(Tensor, ViewNarrowSelectShareStorage) {
  std::vector<float> v(24);
  for (int i = 0; i < 24; ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::from_floats(v, {2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  Tensor row = t[1];
  EXPECT_EQ(row.shape(), (Shape{3, 4}));
  EXPECT_EQ(row.to_float_vector()[0], 12.0f);
  Tensor cols = t.view({6, 4}).narrow(1, 1, 2);
  EXPECT_FALSE(cols.is_contiguous());
  auto c = cols.contiguous().to_float_vector();
  ASSERT_EQ(c.size(), 12u);
  EXPECT_EQ(c[0], 1.0f);
  EXPECT_EQ(c[1], 2.0f);
  EXPECT_EQ(c[2], 5.0f);
  EXPECT_THROW(cols.view({12}), Error);
  EXPECT_THROW(t.narrow(0, 1, 2), Error);
  EXPECT_EQ(t.view({-1, 8}).shape(), (Shape{3, 8}));
}

TEST(Tensor, DtypeRoundTrips) {
  Tensor t = Tensor::from_floats({1.0f, -2.5f, 3.140625f, 65504.0f, 1e-8f}, {5});
  auto b = t.to(DType::bf16).to(DType::f32).to_float_vector();
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -2.5f);
  EXPECT_EQ(b[2], 3.140625f);
  auto h = t.to(DType::f16).to_float_vector();
  EXPECT_EQ(h[3], 65504.0f);
  EXPECT_EQ(h[1], -2.5f);
  EXPECT_NEAR(h[4], 0.0f, 1e-7);
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);  // ties round to even
  EXPECT_EQ(dtype_from_name("bfloat16"), DType::bf16);
  EXPECT_THROW(dtype_from_name("f8"), InvalidArgument);
}

TEST(Tensor, DeviceParsing) {
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_EQ(parse_device("cuda:1").index, 1);
  EXPECT_THROW(parse_device("tpu"), InvalidArgument);
  EXPECT_THROW(parse_device("cuda:x"), InvalidArgument);
}

// The contiguous bf16 <-> f32 fast path gives what the element-wise conversions give (rounding to
// nearest even, NaN and infinities kept), and a strided copy still goes the generic way.
TEST(Tensor, DtypeConversionFastPathMatchesTheElementwiseOne) {
  const std::vector<float> values = {0.0f, -0.0f, 1.0f, -2.5f, 1.00390625f, 1.01171875f, 3.4e38f,
                                     1e-40f, INFINITY, -INFINITY, NAN, 65504.0f, 0.1f};
  Tensor f = Tensor::from_floats(values, {static_cast<int64_t>(values.size())});
  Tensor b = f.to(DType::bf16);
  Tensor back = b.to(DType::f32);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t want = f32_to_bf16(values[i]);
    EXPECT_EQ(b.data<uint16_t>()[i], want) << values[i];
    const float w = bf16_to_f32(want), got = back.data<float>()[i];
    if (std::isnan(w))
      EXPECT_TRUE(std::isnan(got)) << i;
    else
      EXPECT_EQ(got, w) << i;
  }
  Tensor m = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3}).to(DType::bf16);
  Tensor col = m.narrow(1, 1, 1).to(DType::f32);  // strided source
  EXPECT_EQ(col.to_float_vector(), (std::vector<float>{2, 5}));
}
