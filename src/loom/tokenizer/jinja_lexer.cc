#include "loom/tokenizer/jinja_lexer.h"

#include <cctype>
#include <cstdlib>

#include "loom/tensor/error.h"

namespace loom::tokenizer::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {}

  std::vector<Token> run() {
    size_t text_start = 0;
    bool strip_next_text = false;  // a preceding `-}}`/`-%}` strips leading whitespace
    while (true) {
      const size_t open = find_tag(text_start);
      std::string text = src_.substr(text_start, open - text_start);
      if (strip_next_text) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
      }
      if (open == src_.size()) {
        push_text(text, text_start);
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const char modifier = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (modifier == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (modifier != '+' && (kind == '%' || kind == '#')) {
        lstrip_block(text, open);
      }
      push_text(text, text_start);
      pos_ = open + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
      line_ = line_at(open);
      bool right_strip = false, right_keep = false;
      if (kind == '#') {
        const size_t close = src_.find("#}", pos_);
        if (close == std::string::npos) fail("unterminated comment {# ... #}");
        right_strip = close > pos_ && src_[close - 1] == '-';
        right_keep = close > pos_ && src_[close - 1] == '+';
        pos_ = close + 2;
      } else {
        tokens_.push_back({kind == '{' ? TokenType::VarBegin : TokenType::BlockBegin, "", line_});
        const char closer = kind == '{' ? '}' : '%';
        lex_expression(closer, right_strip, right_keep);
        tokens_.push_back({kind == '{' ? TokenType::VarEnd : TokenType::BlockEnd, "", line_});
      }
      text_start = pos_;
      strip_next_text = right_strip;
      if (!right_strip && !right_keep && kind != '{' && text_start < src_.size()) {  // trim_blocks
        if (src_[text_start] == '\n') ++text_start;
        else if (src_.compare(text_start, 2, "\r\n") == 0) text_start += 2;
      }
    }
    tokens_.push_back({TokenType::End, "", line_at(src_.size())});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t k = src_.find('{', from); k != std::string::npos; k = src_.find('{', k + 1))
      if (k + 1 < src_.size() && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
    return src_.size();
  }

  int line_at(size_t offset) {
    while (line_scan_ < offset && line_scan_ < src_.size()) {
      if (src_[line_scan_] == '\n') ++line_count_;
      ++line_scan_;
    }
    return line_count_;
  }

  // lstrip_blocks: spaces and tabs between the start of a line and a block tag are dropped.
  void lstrip_block(std::string& text, size_t tag_offset) const {
    size_t k = tag_offset;
    while (k > 0 && (src_[k - 1] == ' ' || src_[k - 1] == '\t')) --k;
    if (k != 0 && src_[k - 1] != '\n') return;
    const size_t run = tag_offset - k;
    size_t strip = 0;
    while (strip < run && strip < text.size() &&
           (text[text.size() - 1 - strip] == ' ' || text[text.size() - 1 - strip] == '\t'))
      ++strip;
    text.resize(text.size() - strip);
  }

  void push_text(const std::string& text, size_t offset) {
    if (!text.empty()) tokens_.push_back({TokenType::Text, text, line_at(offset)});
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(str("chat template line ", line_, ": ", what));
  }

  void lex_expression(char closer, bool& right_strip, bool& right_keep) {
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        if (src_[pos_] == '\n') ++line_;
        ++pos_;
      }
      if (pos_ >= src_.size()) fail(closer == '}' ? "unterminated {{ ... }}" : "unterminated {% ... %}");
      const char c = src_[pos_];
      // Tag end, optionally with a whitespace-control sign.
      if ((c == '-' || c == '+') && pos_ + 2 < src_.size() + 0 && src_[pos_ + 1] == closer && src_[pos_ + 2] == '}') {
        right_strip = c == '-';
        right_keep = c == '+';
        pos_ += 3;
        return;
      }
      if (c == closer && pos_ + 1 < src_.size() && src_[pos_ + 1] == '}') {
        pos_ += 2;
        return;
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        tokens_.push_back({TokenType::Name, src_.substr(pos_, e - pos_), line_});
        pos_ = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                     "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="};
        bool found = false;
        for (const char* op : kOps) {
          const size_t n = std::char_traits<char>::length(op);
          if (src_.compare(pos_, n, op) == 0) {
            tokens_.push_back({TokenType::Op, op, line_});
            pos_ += n;
            found = true;
            break;
          }
        }
        if (!found) fail(str("unexpected character '", c, "'"));
      }
    }
  }

  void lex_number() {
    size_t e = pos_;
    while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      is_float = true;
      ++e;
      while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t k = e + 1;
      if (k < src_.size() && (src_[k] == '+' || src_[k] == '-')) ++k;
      if (k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]))) {
        is_float = true;
        e = k;
        while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
      }
    }
    std::string text;
    for (size_t k = pos_; k < e; ++k)
      if (src_[k] != '_') text += src_[k];
    Token t{is_float ? TokenType::Float : TokenType::Int, text, line_};
    if (is_float) t.float_value = std::strtod(text.c_str(), nullptr);
    else t.int_value = std::strtoll(text.c_str(), nullptr, 10);
    tokens_.push_back(t);
    pos_ = e;
  }

  void lex_string(char quote) {
    std::string value;
    size_t k = pos_ + 1;
    for (;; ++k) {
      if (k >= src_.size()) fail("unterminated string literal");
      const char c = src_[k];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (++k >= src_.size()) fail("unterminated string literal");
      switch (src_[k]) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case '0': value += '\0'; break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case '\n': break;  // line continuation
        default:  // Python keeps unknown escapes verbatim
          value += '\\';
          value += src_[k];
      }
    }
    tokens_.push_back({TokenType::String, value, line_});
    pos_ = k + 1;
  }

  const std::string& src_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int line_ = 1;
  size_t line_scan_ = 0;
  int line_count_ = 1;
};

}  // namespace

std::vector<Token> lex(const std::string& source) { return Lexer(source).run(); }

}  // namespace loom::tokenizer::jinja
