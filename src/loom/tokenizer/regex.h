// A compiled Unicode regex (PCRE2 in UTF + UCP mode, JIT-compiled when available), used for the
// Split pre-tokenizer patterns of tokenizer.json such as `\p{L}+|\s+(?!\S)`.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace loom::tokenizer {

class Regex {
 public:
  explicit Regex(const std::string& pattern);  // throws loom::Error with PCRE2's message and offset
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for every non-overlapping match in text, left to right; an empty
  // match advances by one character. text must be valid UTF-8.
  void for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& on_match) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::tokenizer
