#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io_test_util.h"
#include "loom/io/safetensors.h"
#include "loom/io/weights.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io::testing;

namespace {

const std::string kModels = std::string(LOOM_TEST_DATA) + "/models";

// The raw bf16 values of a tensor read with plain file I/O (independent of the mmap path).
std::vector<float> read_bf16_with_ifstream(const std::string& path, const SafetensorsFile::Entry& e) {
  std::ifstream in(path, std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  in.seekg(static_cast<std::streamoff>(8 + header_len + e.begin));
  std::vector<uint16_t> raw((e.end - e.begin) / 2);
  in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size() * 2));
  std::vector<float> out;
  for (uint16_t h : raw) out.push_back(bf16_to_f32(h));
  return out;
}

// The [rows, cols] sub-block of a row-major [R, C] matrix.
std::vector<float> block(const std::vector<float>& m, int64_t C, int64_t r0, int64_t rn, int64_t c0, int64_t cn) {
  std::vector<float> out;
  for (int64_t r = r0; r < r0 + rn; ++r)
    for (int64_t c = c0; c < c0 + cn; ++c) out.push_back(m[r * C + c]);
  return out;
}

}  // namespace

// Every fixture: every tensor loads at its stored shape, bf16 -> f32 exactly, and row/column
// slices agree with the full tensor.
TEST(Checkpoint, FixturesLoadAndSlicesAgreeWithFullLoads) {
  int checked = 0;
  for (const auto& base : {kModels, kModels + "/variants"}) {
    for (const auto& dir : std::filesystem::directory_iterator(base)) {
      const std::string st = (dir.path() / "model.safetensors").string();
      if (!std::filesystem::exists(st)) continue;
      SCOPED_TRACE(st);
      const SafetensorsFile file(st);
      const auto source = open_checkpoint(dir.path().string());
      EXPECT_EQ(source->describe(), "checkpoint " + dir.path().string());
      for (const auto& [name, e] : file.entries()) {
        ASSERT_TRUE(source->has(name));
        const Tensor full = source->load(name, e.shape, DType::f32);
        ASSERT_EQ(full.shape(), e.shape);
        const std::vector<float> values = full.to_float_vector();
        ASSERT_EQ(values, read_bf16_with_ifstream(st, e)) << name;
        // Stored dtype: the bits come back unchanged.
        const Tensor same = source->load(name, e.shape, DType::bf16);
        ASSERT_EQ(same.to_float_vector(), values) << name;
        if (e.shape.size() != 2 || e.shape[0] < 3 || e.shape[1] < 3) continue;
        const int64_t R = e.shape[0], C = e.shape[1];
        const Tensor rows = source->load(name, e.shape, DType::f32, Slice{0, 1, R - 2});
        EXPECT_EQ(rows.shape(), (Shape{R - 2, C}));
        EXPECT_EQ(rows.to_float_vector(), block(values, C, 1, R - 2, 0, C)) << name;
        const Tensor cols = source->load(name, e.shape, DType::f32, Slice{1, C / 3, C / 3 + 1});
        EXPECT_EQ(cols.shape(), (Shape{R, C / 3 + 1}));
        EXPECT_EQ(cols.to_float_vector(), block(values, C, 0, R, C / 3, C / 3 + 1)) << name;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(Checkpoint, ShardedWithIndexAndDtypeConversions) {
  TempDir dir;
  // Shard 1: f32 [4, 6]; shard 2: bf16 [2, 3, 4] and f16 [5].
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), {f32_tensor("a.weight", {4, 6}, iota(24, 0.5f))});
  std::vector<uint16_t> b16, h16;
  for (int i = 0; i < 24; ++i) b16.push_back(f32_to_bf16(static_cast<float>(i) - 3.25f));
  for (int i = 0; i < 5; ++i) h16.push_back(f32_to_f16(0.125f * static_cast<float>(i) + 1.0f));
  write_safetensors(dir.file("model-00002-of-00002.safetensors"),
                    {u16_tensor("b.weight", "BF16", {2, 3, 4}, b16), u16_tensor("c.norm", "F16", {5}, h16)});
  write_text(dir.file("model.safetensors.index.json"), R"({"metadata": {"total_size": 160}, "weight_map": {
      "a.weight": "model-00001-of-00002.safetensors",
      "b.weight": "model-00002-of-00002.safetensors",
      "c.norm": "model-00002-of-00002.safetensors"}})");
  const auto src = open_checkpoint(dir.str());
  EXPECT_TRUE(src->has("a.weight") && src->has("b.weight") && src->has("c.norm"));
  EXPECT_FALSE(src->has("d.weight"));

  EXPECT_EQ(src->load("a.weight", {4, 6}, DType::f32).to_float_vector(), iota(24, 0.5f));
  // f32 -> bf16 rounds; these values are all representable so they survive exactly.
  EXPECT_EQ(src->load("a.weight", {4, 6}, DType::bf16).to_float_vector(), iota(24, 0.5f));
  EXPECT_EQ(src->load("a.weight", {4, 6}, DType::f16, Slice{1, 2, 3}).to_float_vector(),
            block(iota(24, 0.5f), 6, 0, 4, 2, 3));

  std::vector<float> b;
  for (int i = 0; i < 24; ++i) b.push_back(static_cast<float>(i) - 3.25f);
  EXPECT_EQ(src->load("b.weight", {2, 3, 4}, DType::f32).to_float_vector(), b);
  // A slice along the last dim of a 3-d tensor: a strided copy.
  const Tensor last = src->load("b.weight", {2, 3, 4}, DType::f32, Slice{2, 1, 2});
  EXPECT_EQ(last.shape(), (Shape{2, 3, 2}));
  std::vector<float> expect;
  for (int i = 0; i < 6; ++i) {
    expect.push_back(b[i * 4 + 1]);
    expect.push_back(b[i * 4 + 2]);
  }
  EXPECT_EQ(last.to_float_vector(), expect);
  // Middle dim.
  const Tensor mid = src->load("b.weight", {2, 3, 4}, DType::f32, Slice{1, 2, 1});
  EXPECT_EQ(mid.to_float_vector(), (std::vector<float>{b[8], b[9], b[10], b[11], b[20], b[21], b[22], b[23]}));

  const std::vector<float> c = src->load("c.norm", {5}, DType::f32).to_float_vector();
  EXPECT_EQ(c, (std::vector<float>{1.0f, 1.125f, 1.25f, 1.375f, 1.5f}));
  EXPECT_EQ(src->load("c.norm", {5}, DType::bf16, Slice{0, 3, 2}).to_float_vector(), (std::vector<float>{1.375f, 1.5f}));
}

TEST(Checkpoint, F32ToBf16RoundsToNearestEven) {
  TempDir dir;
  const std::vector<float> v = {1.00390625f, 1.01171875f, -2.0000001f, 3.0e38f};
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("x", {4}, v)});
  const Tensor t = open_checkpoint(dir.str())->load("x", {4}, DType::bf16);
  const auto* bits = t.data<uint16_t>();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(bits[i], f32_to_bf16(v[i]));
  EXPECT_EQ(bits[0], 0x3f80);  // a tie rounds to even
}

TEST(Checkpoint, ViewsOutliveTheSourceAndWritesDoNotReachTheFile) {
  TempDir dir;
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {3, 4}, iota(12))});
  Tensor rows;
  {
    auto src = open_checkpoint(dir.str());
    rows = src->load("w", {3, 4}, DType::f32, Slice{0, 1, 2});  // same dtype: may be a view of the mapping
  }
  EXPECT_EQ(rows.to_float_vector(), (std::vector<float>{4, 5, 6, 7, 8, 9, 10, 11}));
  rows.data<float>()[0] = 42.0f;
  EXPECT_EQ(open_checkpoint(dir.str())->load("w", {3, 4}, DType::f32).to_float_vector(), iota(12));
}

TEST(Checkpoint, BadSliceOrDtypeRequest) {
  TempDir dir;
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {3, 4}, iota(12))});
  const auto src = open_checkpoint(dir.str());
  expect_error([&] { src->load("w", {3, 4}, DType::f32, Slice{1, 2, 3}); }, {"'w'", "[3, 4]"});
  expect_error([&] { src->load("w", {3, 4}, DType::f32, Slice{2, 0, 1}); }, {"'w'", "dim 2"});
  expect_error([&] { src->load("w", {3, 4}, DType::i32); }, {"w", dir.file("model.safetensors"), "i32"});
}

// ---- Every corruption names the file, and the tensor where one is involved. ----

TEST(CheckpointErrors, MissingOrEmptyDirectory) {
  expect_error<InvalidArgument>([] { open_checkpoint("/nonexistent/loom-ckpt"); }, {"/nonexistent/loom-ckpt"});
  TempDir empty;
  expect_error([&] { open_checkpoint(empty.str()); }, {empty.str(), "model.safetensors"});
}

TEST(CheckpointErrors, FileShorterThanTheLengthField) {
  TempDir dir;
  write_text(dir.file("model.safetensors"), "abc");
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "truncated"});
}

TEST(CheckpointErrors, HeaderLengthBeyondEndOfFile) {
  TempDir dir;
  WriteOptions o;
  o.header_len = 1ull << 40;
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2}, {1, 2})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "header"});
}

TEST(CheckpointErrors, InvalidJsonHeader) {
  TempDir dir;
  WriteOptions o;
  o.raw_header = "{\"w\": {\"dtype\": \"F32\",";
  write_safetensors(dir.file("model.safetensors"), {}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "invalid JSON"});
}

TEST(CheckpointErrors, TruncatedDataNamesTheTensor) {
  TempDir dir;
  WriteOptions o;
  o.truncate_to = 8 + 200;  // header fits, the second tensor's bytes do not
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("first", {2}, {1, 2}), f32_tensor("second", {64}, iota(64))},
                    o);
  const std::string path = dir.file("model.safetensors");
  ASSERT_LT(std::filesystem::file_size(path), 8 + 200 + 1u);
  expect_error([&] { open_checkpoint(dir.str()); }, {path, "'second'", "truncated"});
}

TEST(CheckpointErrors, OffsetsOutOfRange) {
  TempDir dir;
  WriteOptions o;
  o.edit_header = [](nlohmann::json& h) { h["w"]["data_offsets"] = {0, 4096}; };
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2}, {1, 2})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'", "data_offsets"});

  o.edit_header = [](nlohmann::json& h) { h["w"]["data_offsets"] = {8, 0}; };
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2}, {1, 2})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'", "data_offsets"});

  o.edit_header = [](nlohmann::json& h) { h["w"]["data_offsets"] = {-1, 8}; };
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2}, {1, 2})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'", "data_offsets"});
}

TEST(CheckpointErrors, SizeDoesNotMatchShape) {
  TempDir dir;
  WriteOptions o;
  o.edit_header = [](nlohmann::json& h) { h["w"]["shape"] = {3}; };
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {4}, {1, 2, 3, 4})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'", "16 bytes", "[3]"});
}

TEST(CheckpointErrors, MalformedEntries) {
  TempDir dir;
  WriteOptions o;
  o.edit_header = [](nlohmann::json& h) { h["w"]["shape"] = {2, -1}; };
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2}, {1, 2})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'", "shape"});
  o.edit_header = [](nlohmann::json& h) { h["w"].erase("data_offsets"); };
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2}, {1, 2})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'", "data_offsets"});
  o.edit_header = [](nlohmann::json& h) { h["w"] = 7; };
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2}, {1, 2})}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'"});
  o = {};
  o.raw_header = "[1, 2]";
  write_safetensors(dir.file("model.safetensors"), {}, o);
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "not a JSON object"});
}

TEST(CheckpointErrors, UnknownDtype) {
  TempDir dir;
  StoredTensor t{"w", "F8_E4M3", {4}, std::vector<uint8_t>(4)};
  write_safetensors(dir.file("model.safetensors"), {t});
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("model.safetensors"), "'w'", "F8_E4M3"});
}

TEST(CheckpointErrors, MissingTensorAndShapeMismatch) {
  TempDir dir;
  write_safetensors(dir.file("model.safetensors"), {f32_tensor("w", {2, 3}, iota(6)), f32_tensor("v", {1}, {1})});
  const auto src = open_checkpoint(dir.str());
  expect_error([&] { src->load("missing.weight", {2}, DType::f32); },
               {"tensor missing.weight not found in checkpoint " + dir.str() + " (2 tensors)"});
  expect_error([&] { src->load("w", {3, 2}, DType::f32); },
               {"tensor w in " + dir.file("model.safetensors") + " has shape [2, 3], expected [3, 2]"});
}

TEST(CheckpointErrors, IndexProblems) {
  TempDir dir;
  write_safetensors(dir.file("shard-1.safetensors"), {f32_tensor("a", {2}, {1, 2})});
  const std::string index = dir.file("model.safetensors.index.json");

  write_text(index, R"({"weight_map": {"a": "shard-1.safetensors", "b": "shard-2.safetensors"}})");
  expect_error([&] { open_checkpoint(dir.str()); }, {index, dir.file("shard-2.safetensors"), "'b'", "missing"});

  write_text(index, R"({"weight_map": {"a": "shard-1.safetensors", "z": "shard-1.safetensors"}})");
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("shard-1.safetensors"), "'z'", "not in the file"});

  write_text(index, R"({"weight_map": {"a": "shard-1.safetensors",)");
  expect_error([&] { open_checkpoint(dir.str()); }, {index, "invalid JSON"});

  write_text(index, R"({"metadata": {}})");
  expect_error([&] { open_checkpoint(dir.str()); }, {index, "weight_map"});

  write_text(index, R"({"weight_map": {"a": 3}})");
  expect_error([&] { open_checkpoint(dir.str()); }, {index, "'a'"});

  // A corrupt shard is named by its own path.
  write_text(index, R"({"weight_map": {"a": "shard-1.safetensors", "b": "shard-2.safetensors"}})");
  write_text(dir.file("shard-2.safetensors"), "xyz");
  expect_error([&] { open_checkpoint(dir.str()); }, {dir.file("shard-2.safetensors"), "truncated"});
}
