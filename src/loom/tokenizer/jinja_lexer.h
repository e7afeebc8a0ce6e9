// Jinja lexer: splits template source into text and tag tokens and the expression tokens inside
// tags, applying whitespace control ({%- -%}, {{- -}}) and transformers' trim_blocks and
// lstrip_blocks settings.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom::tokenizer::jinja {

enum class TokenType { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };

struct Token {
  TokenType type;
  std::string text;  // text, name, operator or string value
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

// Throws loom::Error naming the line for unterminated tags, strings and unknown characters.
std::vector<Token> lex(const std::string& source);

}  // namespace loom::tokenizer::jinja
