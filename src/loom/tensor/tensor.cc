#include "loom/tensor/tensor.h"

#include <cstring>
#include <sstream>

#include "loom/tensor/allocator.h"

namespace loom {
namespace {

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

float load_as_float(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::i32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DType::i64: return static_cast<float>(static_cast<const int64_t*>(p)[i]);
    case DType::u8: return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
  }
  return 0;
}

void store_from_float(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = v; break;
    case DType::bf16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); break;
    case DType::f16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); break;
    case DType::i32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::i64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
    case DType::u8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
  }
}

bool is_int(DType t) { return t == DType::i32 || t == DType::i64 || t == DType::u8; }

// Contiguous host bf16 <-> f32, one tight loop each (the runner converts every step's logits;
// the generic strided loop below costs ~50x more per element).
bool convert_contiguous(void* dst, DType dt, const void* src, DType st, int64_t n) {
  if (st == DType::bf16 && dt == DType::f32) {
    const auto* s = static_cast<const uint16_t*>(src);
    auto* d = static_cast<uint32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<uint32_t>(s[i]) << 16;  // bf16_to_f32, vectorizable
    return true;
  }
  if (st == DType::f32 && dt == DType::bf16) {
    const auto* s = static_cast<const float*>(src);
    auto* d = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    return true;
  }
  return false;
}

}  // namespace

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape) LOOM_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  auto st = std::make_shared<Storage>();
  st->nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  st->device = device;
  Allocator& a = device.is_cpu() ? host_allocator() : device_allocator(device);
  void* p = a.allocate(st->nbytes);
  st->data = p;
  const size_t n = st->nbytes;
  st->owner = std::shared_ptr<void>(p, [&a, n](void* q) { a.deallocate(q, n); });
  t.storage_ = std::move(st);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device.is_cpu()) {
    if (t.nbytes()) std::memset(t.data_ptr(), 0, t.nbytes());
  } else {
    zero_device_bytes(t.data_ptr(), device, t.nbytes());
  }
  return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, DType dtype, Device device,
                    std::shared_ptr<void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  auto st = std::make_shared<Storage>();
  st->data = data;
  st->nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  st->device = device;
  st->owner = std::move(owner);
  t.storage_ = std::move(st);
  return t;
}

Tensor Tensor::from_floats(const std::vector<float>& v, const Shape& shape) {
  LOOM_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), "from_floats: ", v.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::f32);
  if (!v.empty()) std::memcpy(t.data_ptr(), v.data(), v.size() * 4);
  return t;
}

Tensor Tensor::from_ints(const std::vector<int32_t>& v, const Shape& shape) {
  LOOM_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape), "from_ints: ", v.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::i32);
  if (!v.empty()) std::memcpy(t.data_ptr(), v.data(), v.size() * 4);
  return t;
}

int64_t Tensor::size(int d) const {
  const int n = dim();
  if (d < 0) d += n;
  LOOM_CHECK(d >= 0 && d < n, "dimension ", d, " out of range for tensor ", str());
  return shape_[d];
}

int64_t Tensor::numel() const { return shape_numel(shape_); }

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != s) return false;
    s *= shape_[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  if (!storage_) return nullptr;
  return static_cast<char*>(storage_->data) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

Tensor Tensor::view(const Shape& shape) const {
  LOOM_CHECK(is_contiguous(), "view of a non-contiguous tensor ", str());
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      LOOM_CHECK(infer < 0, "view: more than one -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) s[infer] = known ? numel() / known : 0;
  LOOM_CHECK(shape_numel(s) == numel(), "view: cannot view ", str(), " as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::narrow(int d, int64_t start, int64_t length) const {
  if (d < 0) d += dim();
  LOOM_CHECK(d >= 0 && d < dim(), "narrow: dim ", d, " out of range for ", str());
  LOOM_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d], "narrow: [", start, ", ",
             start + length, ") out of range for dim ", d, " of ", str());
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = length;
  return t;
}

Tensor Tensor::operator[](int64_t i) const {
  LOOM_CHECK(dim() >= 1 && i >= 0 && i < shape_[0], "index ", i, " out of range for ", str());
  Tensor t = *this;
  t.offset_ += i * strides_[0];
  t.shape_.erase(t.shape_.begin());
  t.strides_.erase(t.strides_.begin());
  return t;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  LOOM_CHECK(device().is_cpu(), "dtype conversion of a device tensor ", str(), " is done by a kernel");
  Tensor t = empty(shape_, dtype);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor src = is_contiguous() ? *this : (this->device().is_cpu() ? contiguous() : *this);
  LOOM_CHECK(src.is_contiguous(), "device copy of a non-contiguous device tensor ", str());
  Tensor t = empty(shape_, dtype_, device);
  copy_bytes(t.data_ptr(), device, src.data_ptr(), src.device(), nbytes());
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  LOOM_CHECK(src.shape_ == shape_, "copy_from: shape ", src.str(), " into ", str());
  if (src.dtype_ == dtype_ && src.is_contiguous() && is_contiguous()) {
    copy_bytes(data_ptr(), device(), src.data_ptr(), src.device(), nbytes());
    return;
  }
  LOOM_CHECK(device().is_cpu() && src.device().is_cpu(), "strided or converting copy between ",
             src.str(), " and ", str(), " must happen on the host");
  if (src.is_contiguous() && is_contiguous() && convert_contiguous(data_ptr(), dtype_, src.data_ptr(), src.dtype_, numel()))
    return;
  // Generic strided element loop (the CPU reference path; never hot).
  const int n = dim();
  const int64_t total = numel();
  std::vector<int64_t> idx(n, 0);
  const bool ints = is_int(dtype_) && is_int(src.dtype_);
  for (int64_t k = 0; k < total; ++k) {
    int64_t so = 0, dof = 0;
    for (int i = 0; i < n; ++i) {
      so += idx[i] * src.strides_[i];
      dof += idx[i] * strides_[i];
    }
    if (ints) {
      int64_t v = src.dtype_ == DType::i64 ? static_cast<const int64_t*>(src.data_ptr())[so]
                  : src.dtype_ == DType::i32 ? static_cast<const int32_t*>(src.data_ptr())[so]
                                             : static_cast<const uint8_t*>(src.data_ptr())[so];
      if (dtype_ == DType::i64) static_cast<int64_t*>(data_ptr())[dof] = v;
      else if (dtype_ == DType::i32) static_cast<int32_t*>(data_ptr())[dof] = static_cast<int32_t>(v);
      else static_cast<uint8_t*>(data_ptr())[dof] = static_cast<uint8_t>(v);
    } else {
      store_from_float(data_ptr(), dtype_, dof, load_as_float(src.data_ptr(), src.dtype_, so));
    }
    for (int i = n - 1; i >= 0; --i) {
      if (++idx[i] < shape_[i]) break;
      idx[i] = 0;
    }
  }
}

void Tensor::fill(float value) {
  LOOM_CHECK(device().is_cpu(), "fill on ", str(), " must happen on the host");
  Tensor c = contiguous();
  LOOM_CHECK(c.data_ptr() == data_ptr(), "fill on a non-contiguous tensor ", str());
  for (int64_t i = 0; i < numel(); ++i) store_from_float(data_ptr(), dtype_, i, value);
}

std::vector<float> Tensor::to_float_vector() const {
  Tensor h = device().is_cpu() ? contiguous() : to(Device::cpu());
  std::vector<float> out(static_cast<size_t>(h.numel()));
  for (int64_t i = 0; i < h.numel(); ++i) out[i] = load_as_float(h.data_ptr(), h.dtype_, i);
  return out;
}

std::string Tensor::str() const {
  return loom::str(dtype_name(dtype_), shape_str(shape_), " ", device().str());
}

}  // namespace loom
