#include "loom/tokenizer/utf8.h"

namespace loom::tokenizer {
namespace {

// How many bytes of s starting at i form a valid prefix of some UTF-8 sequence (the "maximal
// subpart" of Unicode's U+FFFD substitution rule), and whether that prefix is a full sequence.
struct Prefix {
  size_t valid_bytes;  // >= 1 when s[i] is a lead byte; 0 when s[i] can never start a sequence
  size_t needed;       // total length the lead byte announces
};

Prefix scan(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {1, 1};
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {0, 1};
  }
  size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
  }
  return {k, need};
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
  Prefix p = scan(s, i);
  return p.valid_bytes == p.needed ? p.needed : 0;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t append_utf8_lossy(std::string_view s, std::string& out, bool stop_at_incomplete_tail) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  size_t i = 0, run = 0;  // [run, i) is valid text not yet copied
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    Prefix p = scan(s, i);
    if (p.valid_bytes == p.needed) {
      i += p.needed;
      continue;
    }
    out.append(s.data() + run, i - run);
    if (stop_at_incomplete_tail && p.valid_bytes > 0 && i + p.valid_bytes == s.size()) return i;
    out.append(kReplacement, 3);
    i += p.valid_bytes > 0 ? p.valid_bytes : 1;
    run = i;
  }
  out.append(s.data() + run, i - run);
  return i;
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace loom::tokenizer
