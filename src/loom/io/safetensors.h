// One .safetensors file, memory-mapped: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the tensor
// bytes. Everything in the header is validated when the file is opened, so a truncated or
// corrupt file fails there with the file (and the tensor) named.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "loom/tensor/tensor.h"

namespace loom::io {

class SafetensorsFile {
 public:
  struct Entry {
    DType dtype;
    Shape shape;
    size_t begin = 0, end = 0;  // byte offsets into the data section
  };

  explicit SafetensorsFile(const std::string& path);  // throws Error naming the file (and tensor)
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const uint8_t* data(const Entry& e) const { return data_ + e.begin; }

  // True when the mapping is private and writable (copy-on-write): a view over it may be
  // written without touching the file or faulting. False if only a read-only map was possible.
  bool copy_on_write() const { return copy_on_write_; }

  // Asks the kernel to start reading [begin, end) of the data section (a hint; never fails).
  void prefetch(size_t begin, size_t end) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  bool copy_on_write_ = false;
  const uint8_t* data_ = nullptr;
  std::map<std::string, Entry> entries_;
};

// "BF16" -> DType::bf16 etc.; throws Error(where: unsupported dtype ...) for others.
DType safetensors_dtype(const std::string& name, const std::string& where);

}  // namespace loom::io
