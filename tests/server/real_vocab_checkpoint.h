// A copy of a tiny family fixture whose vocabulary covers the Qwen3 tokenizer, for serving tests of
// families whose own tokenizer is not in the test data: the embed_tokens and lm_head rows repeat
// the fixture's (row i is row i mod V), config.json's vocab_size becomes Qwen3's and its
// end-of-sequence id Qwen3's <|im_end|>. Every other tensor is copied byte for byte.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/io/safetensors.h"

namespace loom::server::testing {

inline constexpr int64_t kQwen3Vocab = 151936;
inline constexpr int64_t kQwen3ImEnd = 151645;

inline std::string safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::f32: return "F32";
    default: throw Error(str("real_vocab_copy: unexpected dtype ", dtype_name(t)));
  }
}

// Writes the copy under the system's temp folder (once per process and fixture) and returns it.
inline std::string real_vocab_copy(const std::string& fixture_dir) {
  namespace fs = std::filesystem;
  const fs::path out = fs::temp_directory_path() / ("loom-realvocab-" + std::to_string(::getpid()) + "-" +
                                                     fs::path(fixture_dir).filename().string());
  if (fs::exists(out / "model.safetensors")) return out.string();
  struct RemovedAtExit {  // ~40 MB each: not left behind in /tmp
    std::vector<fs::path> dirs;
    ~RemovedAtExit() {
      std::error_code ec;
      for (const auto& d : dirs) fs::remove_all(d, ec);
    }
  };
  static RemovedAtExit cleanup;
  cleanup.dirs.push_back(out);
  fs::create_directories(out);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(fs::path(fixture_dir) / "config.json"));
  config["vocab_size"] = kQwen3Vocab;
  config["eos_token_id"] = kQwen3ImEnd;
  std::ofstream(out / "config.json") << config.dump(2);

  const io::SafetensorsFile in((fs::path(fixture_dir) / "model.safetensors").string());
  nlohmann::json header = nlohmann::json::object();
  std::vector<std::pair<const io::SafetensorsFile::Entry*, size_t>> parts;  // entry, bytes written
  size_t offset = 0;
  for (const auto& [name, e] : in.entries()) {
    Shape shape = e.shape;
    size_t bytes = e.end - e.begin;
    if (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
      bytes = bytes / shape[0] * kQwen3Vocab;
      shape[0] = kQwen3Vocab;
    }
    header[name] = {{"dtype", safetensors_dtype_name(e.dtype)}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    parts.emplace_back(&e, bytes);
    offset += bytes;
  }
  std::string h = header.dump();
  h.resize((h.size() + 7) / 8 * 8, ' ');
  std::ofstream f(out / "model.safetensors", std::ios::binary);
  const uint64_t n = h.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << h;
  for (const auto& [e, bytes] : parts) {
    const size_t have = e->end - e->begin;
    for (size_t done = 0; done < bytes; done += have)  // tiles the rows of the two vocabulary tensors
      f.write(reinterpret_cast<const char*>(in.data(*e)), static_cast<std::streamsize>(std::min(have, bytes - done)));
  }
  LOOM_CHECK(f.good(), "real_vocab_copy: writing ", out.string());
  return out.string();
}

}  // namespace loom::server::testing
