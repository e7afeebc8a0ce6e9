// Loading straight onto a GPU: the host-side slice/convert result is copied to the device.
// Part of test_cuda, which scripts/device_check.sh runs on the GPU machine.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <optional>

#include "io/io_test_util.h"
#include "loom/io/weights.h"
#include "loom/tensor/pinned_upload.h"

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

namespace {

// LOOM_PINNED_LOAD set for the guard's lifetime (the staged path is the default; 0 turns it off).
struct PinnedLoad {
  explicit PinnedLoad(bool on) { setenv("LOOM_PINNED_LOAD", on ? "1" : "0", 1); }
  ~PinnedLoad() { unsetenv("LOOM_PINNED_LOAD"); }
};

}  // namespace

// The staged path (tensor/pinned_upload.h) and the pageable one give the host path's values: whole
// tensors, row and column slices, f32 -> bf16 conversion, many loads in a row (the pinned buffers reused).
TEST(CudaLoad, PinnedStagingMatchesTheHostLoad) {
  for (bool pinned : {true, false}) {
    SCOPED_TRACE(pinned ? "pinned" : "pageable");
    PinnedLoad mode(pinned);
    TempDir dir;
    write_safetensors(dir.file("model.safetensors"),
                      {f32_tensor("a", {300, 70}, iota(300 * 70, 0.01f)), f32_tensor("b", {5, 4, 9}, iota(180))});
    const auto src = open_checkpoint(dir.str());
    for (int round = 0; round < 3; ++round)
      for (DType dt : {DType::f32, DType::bf16})
        for (const std::optional<Slice>& sl : {std::optional<Slice>{}, std::optional<Slice>{Slice{0, 17, 200}},
                                               std::optional<Slice>{Slice{1, 3, 50}}}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << (sl ? " slice along " + std::to_string(sl->dim) : " whole"));
          const Tensor dev = src->load("a", {300, 70}, dt, sl, Device::cuda(0));
          EXPECT_TRUE(dev.device().is_cuda());
          EXPECT_EQ(dev.to(Device::cpu()).to_float_vector(), src->load("a", {300, 70}, dt, sl).to_float_vector());
          const Tensor b = src->load("b", {5, 4, 9}, dt, Slice{1, 1, 2}, Device::cuda(0));
          EXPECT_EQ(b.to(Device::cpu()).to_float_vector(), src->load("b", {5, 4, 9}, dt, Slice{1, 1, 2}).to_float_vector());
        }
  }
}

// Two 4 MB buffers and 32 pieces: a buffer refilled before its copy finished would corrupt the
// piece in flight (each piece a different byte).
TEST(CudaLoad, PinnedUploaderRefillsABufferOnlyAfterItsCopy) {
  const size_t piece = size_t{4} << 20;
  const int pieces = 32;
  Tensor dst = Tensor::empty({static_cast<int64_t>(piece * pieces)}, DType::u8, Device::cuda(0));
  {
    PinnedUploader up(Device::cuda(0), piece, 2);
    for (int i = 0; i < pieces; ++i)
      up.upload(static_cast<uint8_t*>(dst.data_ptr()) + i * piece, piece,
                [&](void* staging) { std::memset(staging, 1 + i, piece); });
    up.finish();
  }
  const Tensor host = dst.to(Device::cpu());
  const auto* bytes = static_cast<const uint8_t*>(host.data_ptr());
  int wrong = 0;
  for (int i = 0; i < pieces; ++i)
    for (size_t b = 0; b < piece; b += 4096) wrong += bytes[i * piece + b] != 1 + i;
  EXPECT_EQ(wrong, 0);
  EXPECT_THROW(PinnedUploader(Device::cuda(0), 16, 2).upload(dst.data_ptr(), 32, [](void*) {}), Error);
}
