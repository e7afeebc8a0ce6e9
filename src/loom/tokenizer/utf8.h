// UTF-8 helpers shared by the tokenizer: validation with replacement, and the lossy decoder that
// both the full and the incremental detokenizer use (so their outputs agree byte for byte).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loom::tokenizer {

// Length of the well-formed UTF-8 sequence at s[i], or 0 if the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF are not well formed).
size_t utf8_sequence_length(std::string_view s, size_t i);

// True when s is well-formed UTF-8.
bool is_valid_utf8(std::string_view s);

// Appends s to out, replacing each maximal ill-formed subpart with U+FFFD (the rule of Rust's
// String::from_utf8_lossy, which Hugging Face tokenizers use). When stop_at_incomplete_tail is
// set, a trailing sequence that is a valid but unfinished prefix is not consumed; the return
// value is how many bytes of s were consumed.
size_t append_utf8_lossy(std::string_view s, std::string& out, bool stop_at_incomplete_tail = false);

inline std::string utf8_lossy(std::string_view s) {
  std::string out;
  append_utf8_lossy(s, out);
  return out;
}

// Appends the UTF-8 encoding of code point cp.
void append_utf8(uint32_t cp, std::string& out);

}  // namespace loom::tokenizer
