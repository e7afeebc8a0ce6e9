// Normalizers from tokenizer.json ("normalizer" field): NFC, NFD, NFKC, NFKD, Lowercase, Strip,
// Replace (literal string pattern), Prepend and Sequence. Input is valid UTF-8.
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace loom::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string_view text) const = 0;
};

// nullptr for a null spec (no normalization); throws loom::Error naming an unsupported type.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& spec);

// Unicode normalization form by name: "NFC", "NFD", "NFKC" or "NFKD".
std::string unicode_normalize(std::string_view text, std::string_view form);

}  // namespace loom::tokenizer
