// Loading straight onto a GPU: the host-side slice/convert result is copied to the device.
// Part of test_cuda, which scripts/device_check.sh runs on the GPU machine.
#include <gtest/gtest.h>

#include "io/io_test_util.h"
#include "loom/io/weights.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io::testing;

TEST(CudaLoad, CheckpointAndDummySlicesLandOnTheDevice) {
  TempDir dir;
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {4, 6}, iota(24))});
  const auto src = open_checkpoint(dir.str());
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tensor host = src->load("w", {4, 6}, dt, Slice{1, 2, 3});
    const Tensor dev = src->load("w", {4, 6}, dt, Slice{1, 2, 3}, Device::cuda(0));
    EXPECT_TRUE(dev.device().is_cuda());
    EXPECT_EQ(dev.dtype(), dt);
    EXPECT_EQ(dev.to(Device::cpu()).to_float_vector(), host.to_float_vector());
  }
  const auto dummy = dummy_weights(5);
  const Tensor d = dummy->load("x.weight", {64, 32}, DType::bf16, Slice{0, 8, 16}, Device::cuda(0));
  EXPECT_TRUE(d.device().is_cuda());
  EXPECT_EQ(d.to(Device::cpu()).to_float_vector(),
            dummy->load("x.weight", {64, 32}, DType::bf16, Slice{0, 8, 16}).to_float_vector());
}
