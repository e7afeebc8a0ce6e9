// gpt-oss's MXFP4 experts (the released checkpoints' form): the dequantization of hand-made
// bytes, and the tiny fixture with its experts quantized to MXFP4 giving the same logits as the
// same checkpoint holding the dequantized values in bf16 (transformers' layout), every position.
#include <gtest/gtest.h>

#include <cmath>

#include "io/io_test_util.h"
#include "loom/io/mxfp4.h"
#include "loom/io/safetensors.h"
#include "loom/runtime/generate.h"
#include "model/reference.h"

using namespace loom;
using io::testing::StoredTensor;

namespace {

TEST(Mxfp4, DequantizesNibblesLowFirstTimesThePowerOfTwo) {
  std::vector<uint8_t> blocks(32, 0), scales = {128, 125};
  blocks[0] = 0x21;   // +0.5 then +1.0
  blocks[1] = 0x9f;   // -6.0 then -0.5
  blocks[16] = 0x77;  // second group: +6.0 twice, times 2^-2
  std::vector<float> out(64, 99.0f);
  io::dequantize_mxfp4_row(blocks.data(), scales.data(), 64, out.data());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(out[2], -12.0f);
  EXPECT_EQ(out[3], -1.0f);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_EQ(out[32], 1.5f);  // 6 · 2^(125 - 127)
  EXPECT_EQ(out[33], 1.5f);
  EXPECT_EQ(out[63], 0.0f);
}

// The e2m1 code nearest to x (ties to the smaller magnitude).
uint8_t fp4_code(float x) {
  static const float mags[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  int best = 0;
  for (int i = 1; i < 8; ++i)
    if (std::abs(std::abs(x) - mags[i]) < std::abs(std::abs(x) - mags[best])) best = i;
  return static_cast<uint8_t>(best | (x < 0 && best ? 8 : 0));
}

std::vector<float> bf16_values(const io::SafetensorsFile& f, const std::string& name) {
  const auto& e = f.entries().at(name);
  const uint16_t* p = reinterpret_cast<const uint16_t*>(f.data(e));
  std::vector<float> v((e.end - e.begin) / 2);
  for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(p[i]);
  return v;
}

StoredTensor bf16_tensor(const std::string& name, const Shape& shape, const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  return io::testing::u16_tensor(name, "BF16", shape, h);
}

// Quantizes w (a bf16 parameter [E, cols, rows], transformers' layout) to MXFP4 over its
// transpose [E, rows, cols] (the checkpoint's layout), appends "<name>_blocks" / "_scales", and
// writes the dequantized values back into w.
void quantize(std::vector<float>& w, int64_t experts, int64_t cols, int64_t rows, const std::string& name,
              std::vector<StoredTensor>& out) {
  const int64_t groups = cols / io::kMxfp4Block, half = io::kMxfp4Block / 2;
  std::vector<uint8_t> blocks(experts * rows * groups * half, 0), scales(experts * rows * groups);
  std::vector<float> back(io::kMxfp4Block);
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g) {
        const auto at = [&](int64_t i) -> float& { return w[(e * cols + g * io::kMxfp4Block + i) * rows + r]; };
        float amax = 0;
        for (int64_t i = 0; i < io::kMxfp4Block; ++i) amax = std::max(amax, std::abs(at(i)));
        const int exponent = amax > 0 ? static_cast<int>(std::ceil(std::log2(amax / 6.0f))) : -127;
        const int64_t row = (e * rows + r) * groups + g;
        scales[row] = static_cast<uint8_t>(exponent + 127);
        for (int64_t i = 0; i < io::kMxfp4Block; ++i) {
          const uint8_t code = fp4_code(std::ldexp(at(i), -exponent));
          blocks[row * half + i / 2] |= static_cast<uint8_t>(i % 2 ? code << 4 : code);
        }
        io::dequantize_mxfp4_row(&blocks[row * half], &scales[row], io::kMxfp4Block, back.data());
        for (int64_t i = 0; i < io::kMxfp4Block; ++i) at(i) = back[i];
      }
  out.push_back({name + "_blocks", "U8", {experts, rows, groups, half}, blocks});
  out.push_back({name + "_scales", "U8", {experts, rows, groups}, scales});
}

// Writes config.json (with `edit`) and the tensors as DIR/model.safetensors.
void write_checkpoint(const std::string& dir, nlohmann::json config, const std::vector<StoredTensor>& tensors) {
  std::ofstream(dir + "/config.json") << config.dump(2);
  io::testing::write_safetensors(dir + "/model.safetensors", tensors);
}

TEST(GptOssMxfp4, QuantizedExpertsGiveTheLogitsOfTheirBf16Values) {
  const std::string fixture = loom::testing::model_dir("tiny-gpt-oss");
  const nlohmann::json config = nlohmann::json::parse(std::ifstream(fixture + "/config.json"));
  const int64_t experts = config["num_local_experts"], h = config["hidden_size"], inter = config["intermediate_size"];
  const io::SafetensorsFile in(fixture + "/model.safetensors");
  std::vector<StoredTensor> plain, mxfp4;
  for (const auto& [name, e] : in.entries()) {
    std::vector<float> v = bf16_values(in, name);
    const bool gate_up = name.ends_with("experts.gate_up_proj"), down = name.ends_with("experts.down_proj");
    if (gate_up) quantize(v, experts, h, 2 * inter, name, mxfp4);  // [E, H, 2I]
    else if (down) quantize(v, experts, inter, h, name, mxfp4);    // [E, I, H]
    else mxfp4.push_back(bf16_tensor(name, e.shape, v));
    plain.push_back(bf16_tensor(name, e.shape, v));  // the dequantized values where quantized
  }
  io::testing::TempDir plain_dir, mxfp4_dir;
  write_checkpoint(plain_dir.str(), config, plain);
  nlohmann::json quantized = config;
  quantized["quantization_config"] = {{"quant_method", "mxfp4"}, {"modules_to_not_convert", nlohmann::json::array()}};
  write_checkpoint(mxfp4_dir.str(), quantized, mxfp4);

  const std::vector<int32_t> prompt = {717, 5, 1999, 42, 42, 7, 300, 1024, 3, 11, 12, 13};
  std::vector<std::vector<float>> logits;
  for (const std::string& dir : {plain_dir.str(), mxfp4_dir.str()}) {
    runtime::RunnerOptions o;
    o.model_path = dir;
    o.max_total_tokens = 256;
    logits.push_back(runtime::prompt_logits(*runtime::create_runner(o), prompt, true).to_float_vector());
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  EXPECT_EQ(logits[0], logits[1]) << "the MXFP4 checkpoint must hold exactly the bf16 checkpoint's weights";

  // Another quantization method is refused in one line.
  quantized["quantization_config"]["quant_method"] = "awq";
  write_checkpoint(mxfp4_dir.str(), quantized, mxfp4);
  runtime::RunnerOptions o;
  o.model_path = mxfp4_dir.str();
  try {
    runtime::create_runner(o);
    ADD_FAILURE() << "an awq gpt-oss checkpoint loaded";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("quant_method 'awq' is not supported"), std::string::npos) << e.what();
  }
}

}  // namespace
