// Test helpers for io/: a scratch directory, a tiny safetensors writer whose header can be
// corrupted on purpose, and an assertion that an error message names what it should.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loom/tensor/tensor.h"

namespace loom::io::testing {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("loom_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

struct StoredTensor {
  std::string name;
  std::string dtype;  // "F32", "BF16", "F16", ...
  Shape shape;
  std::vector<uint8_t> bytes;
};

inline StoredTensor f32_tensor(const std::string& name, const Shape& shape, const std::vector<float>& v) {
  StoredTensor t{name, "F32", shape, std::vector<uint8_t>(v.size() * 4)};
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

inline StoredTensor u16_tensor(const std::string& name, const std::string& dtype, const Shape& shape,
                               const std::vector<uint16_t>& v) {
  StoredTensor t{name, dtype, shape, std::vector<uint8_t>(v.size() * 2)};
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

// 0, 1, 2, ... as floats: every element says where it came from.
inline std::vector<float> iota(int64_t n, float scale = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * scale;
  return v;
}

struct WriteOptions {
  std::function<void(nlohmann::json&)> edit_header;  // corrupt the header JSON
  std::string raw_header;                            // replace the header text entirely
  std::optional<uint64_t> header_len;                // lie about the header length
  std::optional<size_t> truncate_to;                 // cut the file to this many bytes
};

inline void write_safetensors(const std::string& path, const std::vector<StoredTensor>& tensors,
                              const WriteOptions& o = {}) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<uint8_t> data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  if (o.edit_header) o.edit_header(header);
  std::string text = o.raw_header.empty() ? header.dump() : o.raw_header;
  while (text.size() % 8) text += ' ';  // the format pads the header to 8 bytes
  std::string file(8, '\0');
  const uint64_t len = o.header_len.value_or(text.size());
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  file += text;
  file.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (o.truncate_to) file.resize(*o.truncate_to);
  std::ofstream(path, std::ios::binary).write(file.data(), static_cast<std::streamsize>(file.size()));
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Runs fn, expecting an exception of type E whose message contains every one of `parts`.
template <typename E = Error, typename F>
void expect_error(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning " << (parts.empty() ? "" : parts[0]);
  } catch (const E& e) {
    const std::string msg = e.what();
    if (std::getenv("LOOM_IO_TEST_PRINT")) std::printf("  error: %s\n", msg.c_str());
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' missing from: " << msg;
  }
}

}  // namespace loom::io::testing
