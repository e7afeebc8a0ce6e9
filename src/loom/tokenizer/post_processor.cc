#include "loom/tokenizer/post_processor.h"

#include <string>

#include "loom/tensor/error.h"

namespace loom::tokenizer {
namespace {

int32_t pair_id(const nlohmann::json& spec, const char* key) {
  const auto& v = spec.at(key);  // ["<s>", 0]
  if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer())
    throw Error(str("tokenizer.json: post_processor.", key, " must be [token, id]"));
  return v[1].get<int32_t>();
}

}  // namespace

SpecialWrap make_special_wrap(const nlohmann::json& spec) {
  SpecialWrap wrap;
  if (spec.is_null()) return wrap;
  const std::string type = spec.value("type", std::string());
  if (type == "ByteLevel") return wrap;
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    wrap.prefix.push_back(pair_id(spec, "cls"));
    wrap.suffix.push_back(pair_id(spec, "sep"));
    return wrap;
  }
  if (type == "TemplateProcessing") {
    const auto& specials = spec.at("special_tokens");
    bool seen_sequence = false;
    for (const auto& piece : spec.at("single")) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name))
        throw Error(str("tokenizer.json: TemplateProcessing uses unknown special token '", name, "'"));
      for (const auto& id : specials[name].at("ids")) (seen_sequence ? wrap.suffix : wrap.prefix).push_back(id.get<int32_t>());
    }
    return wrap;
  }
  if (type == "Sequence") {
    for (const auto& p : spec.at("processors")) {
      SpecialWrap w = make_special_wrap(p);
      wrap.prefix.insert(wrap.prefix.end(), w.prefix.begin(), w.prefix.end());
      wrap.suffix.insert(wrap.suffix.end(), w.suffix.begin(), w.suffix.end());
    }
    return wrap;
  }
  throw Error(str("tokenizer.json: unsupported post_processor type '", type,
                  "' (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)"));
}

}  // namespace loom::tokenizer
