// `--load-format dummy` made on the GPU equals the host generator bit for bit (any slice, any
// float dtype), so a dummy-weight benchmark measures the same model whichever side made it.
#include <cstring>

#include "cuda_test_util.h"
#include "loom/io/weights.h"

namespace loom {
namespace {

TEST(DummyWeightsOnGpu, EqualTheHostGeneratorBitForBit) {
  SKIP_WITHOUT_GPU();
  auto src = io::dummy_weights(42);
  struct Case {
    const char* name;
    Shape shape;
    std::optional<io::Slice> slice;
  };
  const std::vector<Case> cases = {
      {"model.layers.0.mlp.experts.3.down_proj.weight", {96, 40}, std::nullopt},
      {"model.layers.1.self_attn.q_proj.weight", {64, 48}, io::Slice{0, 16, 32}},
      {"model.layers.1.self_attn.o_proj.weight", {64, 48}, io::Slice{1, 8, 24}},
      {"model.layers.2.input_layernorm.weight", {4096}, std::nullopt},
      {"lm_head.weight", {3, 5, 7}, io::Slice{1, 2, 3}},
  };
  for (const Case& c : cases) {
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      const Tensor host = src->load(c.name, c.shape, dt, c.slice, Device::cpu());
      const Tensor dev = src->load(c.name, c.shape, dt, c.slice, Device::cuda(0)).to(Device::cpu());
      ASSERT_EQ(host.shape(), dev.shape()) << c.name;
      EXPECT_EQ(std::memcmp(host.data_ptr(), dev.data_ptr(), host.nbytes()), 0) << c.name << " " << dtype_name(dt);
    }
  }
}

}  // namespace
}  // namespace loom
