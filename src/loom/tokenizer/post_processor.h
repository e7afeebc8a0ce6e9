// Post-processors of tokenizer.json ("post_processor"), applied when encode() is asked to add
// special tokens: TemplateProcessing (single sequence), RobertaProcessing, BertProcessing,
// ByteLevel (adds nothing) and Sequence.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::tokenizer {

// The ids a post-processor puts around a single sequence.
struct SpecialWrap {
  std::vector<int32_t> prefix, suffix;
};

// Throws loom::Error naming an unsupported type.
SpecialWrap make_special_wrap(const nlohmann::json& spec);

}  // namespace loom::tokenizer
