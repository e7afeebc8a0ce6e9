#include "loom/engine/text_stream.h"

#include <algorithm>

namespace loom::engine {

TextStream::TextStream(const tokenizer::Tokenizer& tokenizer, bool skip_special, std::vector<std::string> stop)
    : detok_(tokenizer, skip_special), vocab_size_(tokenizer.vocab_size()), stop_(std::move(stop)) {}

std::string TextStream::push(int32_t token) {
  if (stopped_) return "";
  // The model's vocabulary may be padded past the tokenizer's: such ids have no text.
  if (token >= 0 && token < vocab_size_) held_ += detok_.push(token);
  return release_safe_text();
}

std::string TextStream::flush() {
  if (stopped_) return "";
  held_ += detok_.flush();
  std::string out = release_safe_text();
  if (!stopped_) {
    out += held_;
    held_.clear();
  }
  return out;
}

std::string TextStream::release_safe_text() {
  // Earliest complete stop string ends the text there.
  size_t first = std::string::npos;
  for (const auto& s : stop_)
    if (!s.empty()) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Keep the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stop_) {
    if (s.empty()) continue;
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace loom::engine
