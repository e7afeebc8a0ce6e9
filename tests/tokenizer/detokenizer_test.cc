// The streaming detokenizer: its pieces concatenate to the full decode, and none of them ever
// holds a partial UTF-8 character.
#include <gtest/gtest.h>

#include <random>

#include "loom/tensor/error.h"
#include "loom/tokenizer/byte_level.h"
#include "loom/tokenizer/utf8.h"
#include "tokenizer/tokenizer_fixture.h"

namespace loom::tokenizer {
namespace {

using testing::qwen3;

std::string stream(const std::vector<int32_t>& ids, bool skip_special) {
  IncrementalDetokenizer detok(qwen3(), skip_special);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = detok.push(id);
    EXPECT_TRUE(is_valid_utf8(piece)) << "partial UTF-8 emitted after id " << id;
    out += piece;
  }
  const std::string rest = detok.flush();
  EXPECT_TRUE(is_valid_utf8(rest));
  return out + rest;
}

TEST(IncrementalDetokenizer, EqualsFullDecodeOnText) {
  const std::vector<std::string> texts = {
      "Hello, world! 你好，世界。 😀👍🏽🇺🇸 naïve café",
      "<|im_start|>assistant\n<think>\nхорошо\n</think>\n\nالعربية ไทย 한국어<|im_end|>",
      "emoji run: 👨‍👩‍👧‍👦🧑🏿‍🚀🏳️‍🌈 and CJK 上下文并行是长上下文推理的关键技术"};
  for (const auto& t : texts) {
    const auto ids = qwen3().encode(t);
    for (bool skip : {false, true}) EXPECT_EQ(stream(ids, skip), qwen3().decode(ids, skip)) << t;
  }
}

TEST(IncrementalDetokenizer, HoldsBackPartialCharacters) {
  // "中" split into its raw byte tokens: nothing comes out until the last byte arrives.
  std::vector<int32_t> bytes;
  for (unsigned char b : std::string("中")) {
    auto id = qwen3().token_id(byte_level_char(b));
    ASSERT_TRUE(id.has_value());
    bytes.push_back(*id);
  }
  IncrementalDetokenizer detok(qwen3(), false);
  EXPECT_EQ(detok.push(bytes[0]), "");
  EXPECT_EQ(detok.push(bytes[1]), "");
  EXPECT_EQ(detok.push(bytes[2]), "中");
  EXPECT_EQ(detok.flush(), "");
  // An unfinished character at the end becomes U+FFFD on flush, as in the full decode.
  IncrementalDetokenizer cut(qwen3(), false);
  EXPECT_EQ(cut.push(bytes[0]), "");
  EXPECT_EQ(cut.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(qwen3().decode({bytes[0]}), "\xEF\xBF\xBD");
}

TEST(IncrementalDetokenizer, EqualsFullDecodeOnRandomIds) {
  // Random ids mixing raw-byte tokens (which split and break characters), ordinary tokens and
  // added tokens: whatever the bytes, the stream must agree with decode().
  std::mt19937 rng(99);
  std::vector<int32_t> byte_tokens;
  for (int b = 0x80; b < 0x100; ++b) {
    auto id = qwen3().token_id(byte_level_char(static_cast<unsigned char>(b)));
    ASSERT_TRUE(id.has_value());
    byte_tokens.push_back(*id);
  }
  ASSERT_EQ(byte_tokens.size(), 128u);
  std::uniform_int_distribution<int> kind(0, 9), len(1, 60);
  std::uniform_int_distribution<int32_t> any(0, qwen3().vocab_size() - 1);
  std::uniform_int_distribution<size_t> pick_byte(0, byte_tokens.size() - 1);
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<int32_t> ids;
    for (int k = len(rng); k > 0; --k) {
      const int c = kind(rng);
      ids.push_back(c < 5 ? byte_tokens[pick_byte(rng)] : c < 9 ? any(rng) : 151643 + (iter % 26));
    }
    for (bool skip : {false, true}) ASSERT_EQ(stream(ids, skip), qwen3().decode(ids, skip)) << "iteration " << iter;
  }
}

TEST(IncrementalDetokenizer, RejectsOutOfRangeIds) {
  IncrementalDetokenizer detok(qwen3(), true);
  EXPECT_THROW(detok.push(-5), InvalidArgument);
  EXPECT_THROW(detok.push(qwen3().vocab_size()), InvalidArgument);
}

}  // namespace
}  // namespace loom::tokenizer
