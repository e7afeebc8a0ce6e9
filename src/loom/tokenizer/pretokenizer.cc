#include "loom/tokenizer/pretokenizer.h"

#include "loom/tensor/error.h"
#include "loom/tokenizer/regex.h"

namespace loom::tokenizer {
namespace {

// GPT-2's pre-tokenization regex, used by ByteLevel when use_regex is true.
const char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& s) {
  if (s == "Removed") return Behavior::Removed;
  if (s == "Isolated") return Behavior::Isolated;
  if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::MergedWithNext;
  if (s == "Contiguous") return Behavior::Contiguous;
  throw Error(str("tokenizer.json: unknown Split behavior '", s,
                  "' (allowed: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)"));
}

struct Span {
  size_t begin, end;
  bool is_match;
};

// Turns the spans (which cover the word) into words according to the delimiter behavior.
void emit(std::string_view word, const std::vector<Span>& spans, Behavior behavior,
          std::vector<std::string_view>& out) {
  std::vector<Span> merged;
  bool previous_match = false;
  for (const Span& s : spans) {
    if (s.end == s.begin) continue;
    switch (behavior) {
      case Behavior::Removed:
        if (!s.is_match) merged.push_back(s);
        break;
      case Behavior::Isolated:
        merged.push_back(s);
        break;
      case Behavior::MergedWithPrevious:
        if (s.is_match && !previous_match && !merged.empty()) merged.back().end = s.end;
        else merged.push_back(s);
        break;
      case Behavior::MergedWithNext:
        if (!merged.empty() && merged.back().is_match && merged.back().end == s.begin) {
          merged.back().end = s.end;
          merged.back().is_match = s.is_match;
        } else {
          merged.push_back(s);
        }
        break;
      case Behavior::Contiguous:
        if (s.is_match && !merged.empty() && merged.back().is_match) merged.back().end = s.end;
        else merged.push_back(s);
        break;
    }
    previous_match = s.is_match;
  }
  for (const Span& s : merged) out.push_back(word.substr(s.begin, s.end - s.begin));
}

// Splits each word at the delimiters that find_delimiters reports.
template <typename FindDelimiters>
void split_words(Pieces& pieces, Behavior behavior, bool invert, FindDelimiters&& find_delimiters) {
  std::vector<std::string_view> out;
  out.reserve(pieces.words.size() * 2);
  std::vector<Span> spans;
  for (std::string_view word : pieces.words) {
    spans.clear();
    size_t last = 0;
    find_delimiters(word, [&](size_t b, size_t e) {
      if (b > last) spans.push_back({last, b, invert});
      spans.push_back({b, e, !invert});
      last = e;
    });
    if (last < word.size()) spans.push_back({last, word.size(), invert});
    emit(word, spans, behavior, out);
  }
  pieces.words.swap(out);
}

class RegexSplit : public PreTokenizer {
 public:
  RegexSplit(const std::string& pattern, Behavior behavior, bool invert)
      : regex_(pattern), behavior_(behavior), invert_(invert) {}
  void split(Pieces& pieces) const override {
    split_words(pieces, behavior_, invert_, [&](std::string_view w, auto&& on_match) {
      regex_.for_each_match(w, on_match);
    });
  }

 private:
  Regex regex_;
  Behavior behavior_;
  bool invert_;
};

class LiteralSplit : public PreTokenizer {
 public:
  LiteralSplit(std::string delimiter, Behavior behavior, bool invert)
      : delimiter_(std::move(delimiter)), behavior_(behavior), invert_(invert) {}
  void split(Pieces& pieces) const override {
    split_words(pieces, behavior_, invert_, [&](std::string_view w, auto&& on_match) {
      if (delimiter_.empty()) return;
      for (size_t p = 0; (p = w.find(delimiter_, p)) != std::string_view::npos; p += delimiter_.size())
        on_match(p, p + delimiter_.size());
    });
  }

 private:
  std::string delimiter_;
  Behavior behavior_;
  bool invert_;
};

class DigitsSplit : public PreTokenizer {
 public:
  explicit DigitsSplit(bool individual) : individual_(individual) {}
  void split(Pieces& pieces) const override {
    split_words(pieces, individual_ ? Behavior::Isolated : Behavior::Contiguous, false,
                [](std::string_view w, auto&& on_match) {
                  for (size_t i = 0; i < w.size(); ++i)
                    if (w[i] >= '0' && w[i] <= '9') on_match(i, i + 1);
                });
  }

 private:
  bool individual_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern);
  }
  void split(Pieces& pieces) const override {
    if (add_prefix_space_) {
      for (auto& w : pieces.words) {
        if (!w.empty() && w[0] == ' ') continue;
        std::string& spaced = pieces.storage.emplace_back();
        spaced.reserve(w.size() + 1);
        spaced += ' ';
        spaced += w;
        w = spaced;
      }
    }
    if (regex_)
      split_words(pieces, Behavior::Isolated, false, [&](std::string_view w, auto&& on_match) {
        regex_->for_each_match(w, on_match);
      });
  }
  bool is_byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(Pieces& pieces) const override {
    for (const auto& p : parts_) p->split(pieces);
  }
  bool is_byte_level() const override {
    for (const auto& p : parts_)
      if (p->is_byte_level()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& spec) {
  if (spec.is_null()) return nullptr;
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    throw Error("tokenizer.json: pre_tokenizer must be an object with a \"type\"");
  const std::string type = spec["type"];
  if (type == "Split") {
    const auto& pattern = spec.at("pattern");
    const Behavior behavior = parse_behavior(spec.at("behavior").get<std::string>());
    const bool invert = spec.value("invert", false);
    if (pattern.contains("Regex"))
      return std::make_unique<RegexSplit>(pattern["Regex"].get<std::string>(), behavior, invert);
    if (pattern.contains("String"))
      return std::make_unique<LiteralSplit>(pattern["String"].get<std::string>(), behavior, invert);
    throw Error("tokenizer.json: Split pattern needs \"Regex\" or \"String\"");
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(spec.value("add_prefix_space", false), spec.value("use_regex", true));
  if (type == "Digits") return std::make_unique<DigitsSplit>(spec.value("individual_digits", false));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : spec.at("pretokenizers"))
      if (auto t = make_pre_tokenizer(p)) parts.push_back(std::move(t));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  throw Error(str("tokenizer.json: unsupported pre_tokenizer type '", type,
                  "' (supported: Split, ByteLevel, Digits, Sequence)"));
}

}  // namespace loom::tokenizer
