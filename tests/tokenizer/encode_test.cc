// Encoding beyond the reference cases: a fuzz round trip over random Unicode, invalid UTF-8,
// special tokens and their look-alikes, and clear errors for bad tokenizer files.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "loom/tensor/error.h"
#include "loom/tokenizer/normalizer.h"
#include "loom/tokenizer/utf8.h"
#include "tokenizer/tokenizer_fixture.h"

namespace loom::tokenizer {
namespace {

using testing::qwen3;

std::string cp(uint32_t c) {
  std::string s;
  append_utf8(c, s);
  return s;
}

// Random valid UTF-8 built from pieces that stress the pre-tokenizer, the normalizer and the
// added-token matcher.
std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> pieces = {
      "hello", " world", "The", " quick", "CamelCase", "x", "'s", "'LL", " don't", "3.14", "2026", "1234567",
      " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "    \t\n",
      "😀", "👍🏽", "👨‍👩‍👧", "🇺🇸", "🚀", "e\xCC\x81", "a\xCC\x8A\xCC\x81", "\xE1\x84\x80\xE1\x85\xA1",  // e+acute, jamo
      "中文", "测试。", "한국어", "العربية", "ไทย", "ñ", "ß", "ﬁ", "Å", "\xE2\x80\x8B",  // zero-width space
      "<|im_end|>", "<|im_start|>", "<think>", "</think>", "<|endoftext|>", "<|im_end", "<|im_", "|>", "< |im_start|>",
      "<think", "<<|im_end|>>", "{", "}", "();", "->", "==", "...", "—", "…", "$", "@", "#", "\\", "\"", "'"};
  std::uniform_int_distribution<int> n_pieces(0, 30), pick(0, static_cast<int>(pieces.size()) - 1), coin(0, 5);
  std::uniform_int_distribution<uint32_t> any_cp(0x20, 0x10FFFF);
  std::string s;
  const int n = n_pieces(rng);
  for (int i = 0; i < n; ++i) {
    if (coin(rng) == 0) {
      uint32_t c = any_cp(rng);
      if (c >= 0xD800 && c <= 0xDFFF) c -= 0x800;  // stay off surrogates
      s += cp(c);
    } else {
      s += pieces[static_cast<size_t>(pick(rng))];
    }
  }
  return s;
}

TEST(Encode, FuzzDecodeOfEncodeIsNfc) {
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 3000; ++iter) {
    const std::string s = random_text(rng);
    ASSERT_TRUE(is_valid_utf8(s));
    const auto ids = qwen3().encode(s);
    ASSERT_EQ(qwen3().decode(ids), unicode_normalize(s, "NFC")) << "iteration " << iter;
  }
}

TEST(Encode, SpecialTokensAreMatchedBeforePreTokenization) {
  const Tokenizer& tok = qwen3();
  const int32_t im_start = *tok.token_id("<|im_start|>"), im_end = *tok.token_id("<|im_end|>");
  const auto ids = tok.encode("<|im_start|>user\nhi<|im_end|>");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), im_start);
  EXPECT_EQ(ids.back(), im_end);
  // Look-alikes stay text: no added-token id appears.
  for (const char* s : {"<|im_end", "<|im_end |>", "< |im_start|>", "<think", "think>"})
    for (int32_t id : tok.encode(s)) EXPECT_LT(id, 151643) << s;
  // Adjacent and nested-looking tokens.
  EXPECT_EQ(tok.encode("<|im_end|><|im_end|>"), (std::vector<int32_t>{im_end, im_end}));
  const auto nested = tok.encode("<<|im_end|>>");
  EXPECT_EQ(std::count(nested.begin(), nested.end(), im_end), 1);
  EXPECT_EQ(tok.decode(nested), "<<|im_end|>>");
}

TEST(Encode, SkipSpecialTokensOnDecode) {
  const Tokenizer& tok = qwen3();
  const auto ids = tok.encode("<|im_start|>assistant\n<think>\nok\n</think>\n\nanswer<|im_end|>");
  EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/true), "assistant\n<think>\nok\n</think>\n\nanswer");
}

TEST(Encode, InvalidUtf8IsReplacedLikeHuggingFace) {
  const Tokenizer& tok = qwen3();
  const std::string repl = "\xEF\xBF\xBD";
  // Each maximal ill-formed subpart becomes one U+FFFD.
  EXPECT_EQ(utf8_lossy("a\xFF" "b"), "a" + repl + "b");
  EXPECT_EQ(utf8_lossy("\xE4\xB8"), repl);            // truncated 3-byte sequence
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), repl + repl + repl);  // surrogate: three subparts
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), repl + repl);     // overlong
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), repl + repl + repl + repl);  // above U+10FFFF
  for (const std::string bad : {std::string("\xFF\xFE" "abc\xC3"), std::string("x\xE4\xB8 y"), std::string("\x80", 1),
                                std::string("ok\0ok", 5)}) {
    const auto ids = tok.encode(bad);
    EXPECT_EQ(ids, tok.encode(utf8_lossy(bad)));
    EXPECT_EQ(tok.decode(ids), unicode_normalize(utf8_lossy(bad), "NFC"));
  }
}

TEST(Encode, DecodeOfPartialCharacterTokensGivesReplacement) {
  const Tokenizer& tok = qwen3();
  const auto ids = tok.encode("中");  // one char, possibly several byte tokens
  std::string all;
  for (int32_t id : ids) all += tok.token_bytes(id);
  EXPECT_EQ(all, "中");
  const auto lone = tok.token_id("\xC3\xA4");  // byte-level spelling of the raw byte 0xE4
  ASSERT_TRUE(lone.has_value());
  EXPECT_EQ(tok.decode({*lone}), "\xEF\xBF\xBD");
  EXPECT_THROW(tok.decode({-1}), InvalidArgument);
  EXPECT_THROW(tok.decode({tok.vocab_size()}), InvalidArgument);
}

TEST(Encode, LongUnbrokenPiecesRoundTrip) {
  // A 200 KB word without spaces and a long whitespace run: the BPE must not go quadratic.
  const std::string word(200000, 'a');
  const auto ids = qwen3().encode(word);
  EXPECT_EQ(qwen3().decode(ids), word);
  const std::string spaces = std::string(100000, ' ') + "x";
  EXPECT_EQ(qwen3().decode(qwen3().encode(spaces)), spaces);
}

TEST(Encode, ConcurrentEncodingAgrees) {
  // The word cache is shared; four threads encoding different texts must each get the serial result.
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> expected;
  std::mt19937 rng(5);
  for (int k = 0; k < 64; ++k) {
    texts.push_back(random_text(rng));
    expected.push_back(qwen3().encode(texts.back()));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        for (size_t k = t; k < texts.size(); k += 3)
          if (qwen3().encode(texts[k]) != expected[k]) ++mismatches[static_cast<size_t>(t)];
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

class BadFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("loom_tok_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  std::string load_error() {
    try {
      Tokenizer::load(dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  std::filesystem::path dir_;
};

TEST_F(BadFiles, MissingTokenizerJson) {
  const std::string msg = load_error();
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
}

TEST_F(BadFiles, MalformedJson) {
  write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
  const std::string msg = load_error();
  EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;
}

TEST_F(BadFiles, WrongStructure) {
  write("tokenizer.json", "{\"version\": \"1.0\"}");
  EXPECT_NE(load_error().find("\"model\" is missing"), std::string::npos);
  write("tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
  EXPECT_NE(load_error().find("BPE"), std::string::npos);
  write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}");
  EXPECT_NE(load_error().find("lacks byte"), std::string::npos);
  write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"zero\"}, \"merges\": []}}");
  EXPECT_NE(load_error().find("bad id"), std::string::npos);
}

TEST_F(BadFiles, MalformedConfigAndTemplate) {
  // A tiny valid byte-level tokenizer: the 256 byte tokens and no merges.
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    static int next = 256;
    if (b == 0) next = 256;
    append_utf8(printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++), s);
    vocab[s] = b;
  }
  nlohmann::json tj = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                       {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}}};
  write("tokenizer.json", tj.dump());
  write("tokenizer_config.json", "{oops");
  EXPECT_NE(load_error().find("tokenizer_config.json: malformed JSON"), std::string::npos);
  write("tokenizer_config.json", "{\"chat_template\": \"{% for m in messages %}{{ m.content | shout }}{% endfor %}\"}");
  const Tokenizer tok = Tokenizer::load(dir_.string());  // loads; the template error shows when used
  EXPECT_EQ(tok.decode(tok.encode("abc")), "abc");
  EXPECT_TRUE(tok.has_chat_template());
  try {
    tok.apply_chat_template(nlohmann::json::array(), nullptr, true, std::nullopt);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported filter 'shout'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom::tokenizer
