// A strided n-d array on a device. Storage is shared between views (narrow/view), like torch.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/tensor/device.h"
#include "loom/tensor/dtype.h"
#include "loom/tensor/error.h"

namespace loom {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);

// Bytes on one device, freed by their owner when the last view goes away.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  std::shared_ptr<void> owner;  // frees `data` (an allocator block, an mmap, ...)
};

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::bf16; }  // raw 16-bit (bf16 or f16)
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A view over memory someone else owns (an mmap'd checkpoint); `owner` keeps it alive.
  static Tensor wrap(void* data, const Shape& shape, DType dtype, Device device,
                     std::shared_ptr<void> owner);
  static Tensor from_floats(const std::vector<float>& v, const Shape& shape);
  static Tensor from_ints(const std::vector<int32_t>& v, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int dim() const { return static_cast<int>(shape_.size()); }
  int64_t size(int d) const;  // negative d counts from the end
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  void* data_ptr() const;
  template <typename T>
  T* data() const {
    if (dtype_of<T>() != dtype_ && !(sizeof(T) == 2 && dtype_size(dtype_) == 2))
      throw Error(loom::str("tensor of dtype ", dtype_name(dtype_), " accessed as ", dtype_name(dtype_of<T>())));
    return static_cast<T*>(data_ptr());
  }

  // Views sharing storage.
  Tensor view(const Shape& shape) const;  // contiguous tensors only; one -1 allowed
  Tensor narrow(int dim, int64_t start, int64_t length) const;
  Tensor operator[](int64_t i) const;  // select along dim 0

  // Copies.
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;     // CPU dtype conversion (float types and ints)
  Tensor to(Device device) const;   // host <-> device copy, same dtype
  void copy_from(const Tensor& src);  // same shape; converts dtype on CPU
  void fill(float value);             // CPU

  // Reads any float dtype on the host into f32 (tests, references).
  std::vector<float> to_float_vector() const;

  std::string str() const;  // "bf16[4, 64] cuda:0"

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_, strides_;
  DType dtype_ = DType::f32;
};

}  // namespace loom
