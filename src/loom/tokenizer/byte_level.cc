#include "loom/tokenizer/byte_level.h"

#include <array>
#include <unordered_map>

#include "loom/tokenizer/utf8.h"

namespace loom::tokenizer {
namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  std::unordered_map<uint32_t, unsigned char> from_cp;
  Tables() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      append_utf8(cp, to_char[b]);
      from_cp[cp] = static_cast<unsigned char>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& byte_level_char(unsigned char b) { return tables().to_char[b]; }

std::optional<std::string> byte_level_decode(std::string_view token) {
  const auto& from = tables().from_cp;
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    size_t n = utf8_sequence_length(token, i);
    if (n == 0) return std::nullopt;
    uint32_t cp = static_cast<uint8_t>(token[i]);
    if (n > 1) {
      cp &= (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
      for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(token[i + k]) & 0x3F);
    }
    auto it = from.find(cp);
    if (it == from.end()) return std::nullopt;
    out += static_cast<char>(it->second);
    i += n;
  }
  return out;
}

}  // namespace loom::tokenizer
