// open_checkpoint: a WeightSource over DIR/model.safetensors or the shards that
// DIR/model.safetensors.index.json lists. Loads read only the requested slice's bytes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "loom/io/convert.h"
#include "loom/io/safetensors.h"
#include "loom/io/slice_layout.h"
#include "loom/io/upload_pieces.h"
#include "loom/io/weights.h"
#include "loom/tensor/pinned_upload.h"

namespace loom::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// weight_map of an index file: tensor name -> shard file name (relative to the directory).
std::map<std::string, std::string> read_weight_map(const fs::path& index) {
  std::ifstream in(index);
  if (!in) throw Error(str("cannot read ", index.string()));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(index.string(), ": invalid JSON: ", e.what()));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(str(index.string(), ": no 'weight_map' object"));
  std::map<std::string, std::string> map;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string() || file.get<std::string>().empty())
      throw Error(str(index.string(), ": tensor '", name, "' maps to ", file.dump(), ", expected a file name"));
    map.emplace(name, file.get<std::string>());
  }
  if (map.empty()) throw Error(str(index.string(), ": 'weight_map' lists no tensors"));
  return map;
}

// The slice `l` of a tensor stored at `src` as `from`, converted to `to` on `device` piece by piece
// through the uploader's pinned buffers (each piece read while the one before is copied).
Tensor staged_to_device(PinnedUploader& up, const uint8_t* src, DType from, const SliceLayout& l, const Shape& shape,
                        DType to, const Device& device) {
  Tensor out = Tensor::empty(shape, to, device);
  const size_t in_size = dtype_size(from), out_size = dtype_size(to);
  for (const UploadPiece& p : upload_pieces(l.outer, l.run(), out_size, up.buffer_bytes())) {
    const uint8_t* piece_src = src + static_cast<size_t>(p.row * l.src_stride() + p.elem) * in_size;
    up.upload(static_cast<uint8_t*>(out.data_ptr()) + static_cast<size_t>(p.row * l.run() + p.elem) * out_size,
              static_cast<size_t>(p.rows * p.elems) * out_size, [&](void* staging) {
                convert_rows(piece_src, from, l.src_stride(), staging, to, p.rows, p.elems);
              });
  }
  return out;
}

class CheckpointSource final : public WeightSource {
 public:
  explicit CheckpointSource(const std::string& dir) : dir_(dir) {
    if (!fs::is_directory(dir))
      throw InvalidArgument(str("model directory '", dir, "' does not exist or is not a directory"));
    const fs::path single = fs::path(dir) / kSingleFile, index = fs::path(dir) / kIndexFile;
    // Like transformers: a single file wins over an index.
    if (fs::exists(single)) {
      open_single(single);
    } else if (fs::exists(index)) {
      open_sharded(index);
    } else {
      throw Error(str("no ", kSingleFile, " or ", kIndexFile, " in ", dir));
    }
  }

  bool has(const std::string& name) const override { return file_of_.count(name) > 0; }

  Tensor load(const std::string& name, const Shape& full_shape, DType dtype, std::optional<Slice> slice,
              Device device) const override {
    const auto it = file_of_.find(name);
    if (it == file_of_.end())
      throw Error(str("tensor ", name, " not found in checkpoint ", dir_, " (", file_of_.size(), " tensors)"));
    const std::shared_ptr<SafetensorsFile>& file = it->second;
    const SafetensorsFile::Entry& e = file->entries().at(name);
    if (e.shape != full_shape)
      throw Error(str("tensor ", name, " in ", file->path(), " has shape ", shape_str(e.shape), ", expected ",
                      shape_str(full_shape)));
    if (!convertible(e.dtype, dtype))
      throw Error(str("tensor ", name, " in ", file->path(), " is stored as ", dtype_name(e.dtype),
                      " and cannot be loaded as ", dtype_name(dtype)));
    const SliceLayout l = slice_layout(name, e.shape, slice);
    const Shape shape = sliced_shape(e.shape, slice);
    const size_t in_size = dtype_size(e.dtype);
    const uint8_t* src = file->data(e) + static_cast<size_t>(l.first()) * in_size;

    // Same dtype, on the host, and contiguous in the file: a view of the mapping, no copy.
    const bool aligned = reinterpret_cast<uintptr_t>(src) % in_size == 0;
    if (device.is_cpu() && dtype == e.dtype && (l.outer == 1 || l.length == l.dim_size) && aligned &&
        file->copy_on_write())
      return Tensor::wrap(const_cast<uint8_t*>(src), shape, dtype, device, file);

    const size_t last = e.begin + static_cast<size_t>((l.outer - 1) * l.src_stride() + l.first() + l.run()) * in_size;
    if (l.numel() > 0) file->prefetch(e.begin + static_cast<size_t>(l.first()) * in_size, last);
    if (device.is_cuda() && pinned_load_enabled()) {
      std::lock_guard<std::mutex> lock(uploaders_mu_);
      if (PinnedUploader* up = uploader(device)) return staged_to_device(*up, src, e.dtype, l, shape, dtype, device);
    }
    Tensor out = Tensor::empty(shape, dtype);
    convert_rows(src, e.dtype, l.src_stride(), out.data_ptr(), dtype, l.outer, l.run());
    return device.is_cpu() ? out : out.to(device);
  }

  std::string describe() const override { return "checkpoint " + dir_; }

 private:
  // One ring of pinned buffers per GPU this source loads onto, freed (after its copies) with it;
  // null when they cannot be had (a container's locked-memory limit, say): loads then take the
  // pageable path, and a line says why.
  PinnedUploader* uploader(const Device& device) const {
    auto it = uploaders_.find(device.index);
    if (it != uploaders_.end()) return it->second.get();
    std::unique_ptr<PinnedUploader> up;
    try {
      up = std::make_unique<PinnedUploader>(device);
      up->reserve();
    } catch (const Error& e) {
      std::fprintf(stderr, "loom: no pinned staging buffers on %s (%s); loading through pageable memory\n",
                   device.str().c_str(), e.what());
      up.reset();
    }
    return uploaders_.emplace(device.index, std::move(up)).first->second.get();
  }

  void open_single(const fs::path& path) {
    auto file = std::make_shared<SafetensorsFile>(path.string());
    for (const auto& [name, _] : file->entries()) file_of_.emplace(name, file);
  }

  // Opens every shard the index names; each listed tensor must be in its shard.
  void open_sharded(const fs::path& index) {
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (const auto& [name, shard] : read_weight_map(index)) {
      auto& file = shards[shard];
      if (!file) {
        const fs::path p = fs::path(dir_) / shard;
        if (!fs::is_regular_file(p))
          throw Error(str(index.string(), ": shard ", p.string(), " (holding tensor '", name, "') is missing"));
        file = std::make_shared<SafetensorsFile>(p.string());
      }
      if (!file->entries().count(name))
        throw Error(str(file->path(), ": tensor '", name, "' listed in ", index.string(), " is not in the file"));
      file_of_.emplace(name, file);
    }
  }

  std::string dir_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> file_of_;  // tensor name -> its file
  mutable std::mutex uploaders_mu_;
  mutable std::map<int, std::unique_ptr<PinnedUploader>> uploaders_;  // by GPU index
};

}  // namespace

std::unique_ptr<WeightSource> open_checkpoint(const std::string& dir) { return std::make_unique<CheckpointSource>(dir); }

}  // namespace loom::io
