// A small hand-made tokenizer.json exercising what Qwen3's does not: GPT-2 style ByteLevel with
// its own regex and prefix space, a Lowercase normalizer, "a b" merges, a TemplateProcessing
// post-processor (add_special_tokens) and merge priority.
#include <gtest/gtest.h>

#include "loom/tensor/error.h"
#include "loom/tokenizer/byte_level.h"
#include "loom/tokenizer/tokenizer.h"

namespace loom::tokenizer {
namespace {

Tokenizer make_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_char(static_cast<unsigned char>(b))] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["Ġw"] = 259;
  nlohmann::json tj = {
      {"added_tokens",
       {{{"id", 260}, {"content", "<s>"}, {"special", true}}, {{"id", 261}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer", {{"type", "Lowercase"}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                    {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {260}}}}, {"</s>", {{"id", "</s>"}, {"ids", {261}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e", "l l", "he ll", "Ġ w"}}}}};
  nlohmann::ordered_json config = {{"eos_token", "</s>"}, {"bos_token", {{"content", "<s>"}}}};
  return Tokenizer::from_json(tj, config);
}

TEST(SyntheticTokenizer, Gpt2StylePipeline) {
  const Tokenizer tok = make_tokenizer();
  // lowercase -> " hello world" (prefix space) -> [" hello", " world"] -> merges by rank.
  const std::vector<int32_t> body = {' ', 258, 'o', 259, 'o', 'r', 'l', 'd'};
  EXPECT_EQ(tok.encode("HELLO World"), body);
  std::vector<int32_t> wrapped = {260};
  wrapped.insert(wrapped.end(), body.begin(), body.end());
  wrapped.push_back(261);
  EXPECT_EQ(tok.encode("HELLO World", /*add_special_tokens=*/true), wrapped);
  EXPECT_EQ(tok.decode(wrapped), "<s> hello world</s>");
  EXPECT_EQ(tok.decode(wrapped, /*skip_special_tokens=*/true), " hello world");
  EXPECT_EQ(tok.eos_token_id(), std::optional<int32_t>(261));
  EXPECT_EQ(tok.vocab_size(), 262);
  EXPECT_FALSE(tok.has_chat_template());
  EXPECT_THROW(tok.apply_chat_template(nlohmann::json::array(), nullptr, true, std::nullopt), InvalidArgument);
}

TEST(SyntheticTokenizer, LowestRankMergeWinsLeftmostFirst) {
  const Tokenizer tok = make_tokenizer();
  // "llll": (l,l) merges leftmost first -> ll ll; "hell" needs he+ll, which outranks nothing else.
  EXPECT_EQ(tok.encode("llll"), (std::vector<int32_t>{' ', 257, 257}));
  EXPECT_EQ(tok.encode("lll"), (std::vector<int32_t>{' ', 257, 'l'}));
  EXPECT_EQ(tok.encode("hhell"), (std::vector<int32_t>{' ', 'h', 258}));
}

TEST(SyntheticTokenizer, UnsupportedPiecesAreNamed) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_char(static_cast<unsigned char>(b))] = b;
  nlohmann::json tj = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                       {"pre_tokenizer", {{"type", "ByteLevel"}}},
                       {"normalizer", {{"type", "BertNormalizer"}}}};
  try {
    Tokenizer::from_json(tj, nullptr);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported normalizer type 'BertNormalizer'"), std::string::npos);
  }
  tj.erase("normalizer");
  tj["pre_tokenizer"] = {{"type", "Metaspace"}};
  try {
    Tokenizer::from_json(tj, nullptr);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported pre_tokenizer type 'Metaspace'"), std::string::npos);
  }
}

}  // namespace
}  // namespace loom::tokenizer
