#include "loom/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace loom::io {
namespace {

using nlohmann::json;

// Closes the descriptor on every path out of the constructor.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Reads one header entry {dtype, shape, data_offsets}; `where` names the file and the tensor.
SafetensorsFile::Entry parse_entry(const json& v, size_t data_size, const std::string& where) {
  if (!v.is_object()) throw Error(str(where, ": header entry must be an object, got ", v.dump()));
  for (const char* k : {"dtype", "shape", "data_offsets"})
    if (!v.contains(k)) throw Error(str(where, ": header entry has no '", k, "'"));
  if (!v["dtype"].is_string()) throw Error(str(where, ": dtype must be a string, got ", v["dtype"].dump()));

  SafetensorsFile::Entry e;
  e.dtype = safetensors_dtype(v["dtype"].get<std::string>(), where);
  const json& shape = v["shape"];
  if (!shape.is_array()) throw Error(str(where, ": shape must be a list, got ", shape.dump()));
  uint64_t numel = 1;
  for (const json& d : shape) {
    if (!d.is_number_unsigned()) throw Error(str(where, ": shape ", shape.dump(), " has a non-integer or negative dimension"));
    const uint64_t n = d.get<uint64_t>();
    if (n != 0 && numel > std::numeric_limits<int64_t>::max() / n)
      throw Error(str(where, ": shape ", shape.dump(), " is too large"));
    numel *= n;
    e.shape.push_back(static_cast<int64_t>(n));
  }

  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    throw Error(str(where, ": data_offsets must be two non-negative integers, got ", off.dump()));
  const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end) throw Error(str(where, ": data_offsets [", begin, ", ", end, "] end before they begin"));
  if (end > data_size)
    throw Error(str(where, ": data_offsets [", begin, ", ", end, "] are outside the data section of ", data_size,
                    " bytes (the file may be truncated)"));
  const uint64_t expected = numel * dtype_size(e.dtype);
  if (end - begin != expected)
    throw Error(str(where, ": holds ", end - begin, " bytes but shape ", shape_str(e.shape), " of ",
                    dtype_name(e.dtype), " needs ", expected));
  e.begin = begin;
  e.end = end;
  return e;
}

}  // namespace

DType safetensors_dtype(const std::string& s, const std::string& where) {
  if (s == "BF16") return DType::bf16;
  if (s == "F16") return DType::f16;
  if (s == "F32") return DType::f32;
  if (s == "I32") return DType::i32;
  if (s == "I64") return DType::i64;
  if (s == "U8") return DType::u8;
  throw Error(str(where, ": unsupported dtype '", s, "' (supported: BF16, F16, F32, I32, I64, U8)"));
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) throw Error(str("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) throw Error(str("cannot stat ", path, ": ", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw Error(str(path, ": not a regular file"));
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8)
    throw Error(str(path, ": truncated safetensors file (", map_size_, " bytes, less than the 8-byte header length)"));

  // Private and writable: weights handed out as views stay writable (copy-on-write) and the
  // file is never modified. Fall back to read-only if the kernel refuses (strict overcommit).
  map_ = ::mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.fd, 0);
  copy_on_write_ = map_ != MAP_FAILED;
  if (map_ == MAP_FAILED) map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error(str("cannot mmap ", path, ": ", std::strerror(errno)));
  }

  try {
    const auto* bytes = static_cast<const uint8_t*>(map_);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
    if (header_len > map_size_ - 8)
      throw Error(str(path, ": corrupt or truncated safetensors file: the header claims ", header_len,
                      " bytes but only ", map_size_ - 8, " follow the length"));
    json header;
    try {
      header = json::parse(bytes + 8, bytes + 8 + header_len);
    } catch (const json::exception& e) {
      throw Error(str(path, ": corrupt safetensors header (invalid JSON): ", e.what()));
    }
    if (!header.is_object()) throw Error(str(path, ": corrupt safetensors header: not a JSON object"));
    data_ = bytes + 8 + header_len;
    const size_t data_size = map_size_ - 8 - header_len;
    for (const auto& [name, v] : header.items()) {
      if (name == "__metadata__") continue;
      entries_.emplace(name, parse_entry(v, data_size, str(path, ": tensor '", name, "'")));
    }
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

void SafetensorsFile::prefetch(size_t begin, size_t end) const {
  if (end <= begin) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto lo = reinterpret_cast<uintptr_t>(data_ + begin) & ~(page - 1);
  const auto hi = reinterpret_cast<uintptr_t>(data_ + end);
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_WILLNEED);
}

}  // namespace loom::io
