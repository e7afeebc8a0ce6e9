// GPT-2's byte-to-unicode table: byte-level BPE vocabularies spell every raw byte as a printable
// code point, so token strings in tokenizer.json must be mapped back to the bytes they stand for.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace loom::tokenizer {

// The UTF-8 spelling of byte b in a byte-level vocabulary (e.g. ' ' -> "Ġ").
const std::string& byte_level_char(unsigned char b);

// Raw bytes of a byte-level token string, or nullopt if it contains a code point outside the table.
std::optional<std::string> byte_level_decode(std::string_view token);

}  // namespace loom::tokenizer
