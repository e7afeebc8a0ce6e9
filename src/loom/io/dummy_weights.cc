// dummy_weights: seeded pseudo-random tensors for `--load-format dummy`. Element i of tensor
// `name` is a pure function of (seed, name, i in the FULL tensor), so any rank's slice equals
// the same slice of the full tensor, and no file is read.
#include <algorithm>
#include <cmath>

#include "loom/io/parallel_chunks.h"
#include "loom/io/slice_layout.h"
#include "loom/io/weights.h"
#ifdef LOOM_HAVE_CUDA
#include "loom/kernels/cuda/kernels.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom::io {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// FNV-1a: unlike std::hash, the same on every platform and build.
uint64_t name_hash(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// RMSNorm/LayerNorm scales ("input_layernorm.weight", "q_norm.weight", "model.norm.weight", ...).
bool is_norm_weight(const std::string& name) { return ends_with(name, "norm.weight") || ends_with(name, "norm"); }

template <typename T, typename Convert>
void fill(void* out, const SliceLayout& l, uint64_t key, bool norm, float scale, Convert to_storage) {
  auto* dst = static_cast<T*>(out);
  // 128 Ki elements a thread: one expert matrix (~1.5 M) still spreads over the cores.
  parallel_chunks(l.numel(), int64_t{1} << 17, [&](int64_t lo, int64_t hi) {
    while (lo < hi) {  // walk the contiguous runs of the slice that cover [lo, hi)
      const int64_t r = lo / l.run(), c = lo % l.run(), n = std::min(l.run() - c, hi - lo);
      const uint64_t base = static_cast<uint64_t>(r * l.src_stride() + l.first() + c);
      for (int64_t k = 0; k < n; ++k) {
        const float u = static_cast<float>(splitmix64(key + base + k) >> 40) * 0x1p-24f;  // [0, 1)
        dst[lo + k] = to_storage(norm ? 1.0f + 0.1f * (u - 0.5f) : scale * (2.0f * u - 1.0f));
      }
      lo += n;
    }
  });
}

class DummySource final : public WeightSource {
 public:
  explicit DummySource(uint64_t seed) : seed_(seed) {}

  bool has(const std::string&) const override { return true; }

  Tensor load(const std::string& name, const Shape& full_shape, DType dtype, std::optional<Slice> slice,
              Device device) const override {
    LOOM_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16, "dummy weights: tensor ", name,
               " requested as ", dtype_name(dtype), "; only f32, bf16 and f16 can be generated");
    for (int64_t d : full_shape) LOOM_CHECK(d >= 0, "dummy weights: tensor ", name, " has shape ", shape_str(full_shape));
    const SliceLayout l = slice_layout(name, full_shape, slice);
    const uint64_t key = splitmix64(seed_ ^ name_hash(name));
    const bool norm = is_norm_weight(name);
    // Uniform in [-s, s], s = 1/sqrt(fan-in) clipped to [0.01, 0.1]: activations stay O(1).
    const double fan_in = full_shape.empty() ? 1.0 : static_cast<double>(std::max<int64_t>(full_shape.back(), 1));
    const float scale = static_cast<float>(std::clamp(1.0 / std::sqrt(fan_in), 0.01, 0.1));
#ifdef LOOM_HAVE_CUDA
    if (device.is_cuda()) {  // made where it is used: no host work, no copy
      Tensor out = Tensor::empty(sliced_shape(full_shape, slice), dtype, device);
      namespace kc = kernels::cuda;
      const kc::FillType type = dtype == DType::f32 ? kc::FillType::f32
                                : dtype == DType::bf16 ? kc::FillType::bf16 : kc::FillType::f16;
      CUDA_CHECK(cudaSetDevice(device.index));
      const cudaStream_t s = cuda::current_stream(device.index);
      if (l.numel() > 0) kc::dummy_fill(out.data_ptr(), type, l.numel(), l.run(), l.src_stride(), l.first(), key, norm, scale, s);
      CUDA_CHECK(cudaStreamSynchronize(s));  // callers may read it from another stream or thread
      return out;
    }
#endif
    Tensor out = Tensor::empty(sliced_shape(full_shape, slice), dtype);
    if (l.numel() > 0) {
      if (dtype == DType::f32) fill<float>(out.data_ptr(), l, key, norm, scale, [](float v) { return v; });
      else if (dtype == DType::bf16) fill<uint16_t>(out.data_ptr(), l, key, norm, scale, f32_to_bf16);
      else fill<uint16_t>(out.data_ptr(), l, key, norm, scale, f32_to_f16);
    }
    return device.is_cpu() ? out : out.to(device);
  }

  std::string describe() const override { return str("dummy weights (seed ", seed_, ")"); }

 private:
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<WeightSource> dummy_weights(uint64_t seed) { return std::make_unique<DummySource>(seed); }

}  // namespace loom::io
