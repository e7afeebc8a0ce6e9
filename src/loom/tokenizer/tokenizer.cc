#include "loom/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "loom/tensor/error.h"
#include "loom/tokenizer/added_vocab.h"
#include "loom/tokenizer/bpe.h"
#include "loom/tokenizer/byte_level.h"
#include "loom/tokenizer/chat_template.h"
#include "loom/tokenizer/normalizer.h"
#include "loom/tokenizer/post_processor.h"
#include "loom/tokenizer/pretokenizer.h"
#include "loom/tokenizer/utf8.h"

namespace loom::tokenizer {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  AddedVocab added;
  SpecialWrap special_wrap;
  int32_t vocab_size = 0;
  // Per id: the token's bytes (null for an unused id) and whether it is special; O(1) for decoding.
  std::vector<const std::string*> id_bytes;
  std::vector<uint8_t> id_special;
  std::optional<int32_t> eos_id;
  nlohmann::ordered_json template_tokens = nlohmann::ordered_json::object();  // bos_token, eos_token, ...
  std::shared_ptr<ChatTemplate> chat_template;
  std::string chat_template_error;  // set when the template exists but does not parse
  bool has_chat_template = false;
};

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(str("cannot open ", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Special tokens in tokenizer_config.json are strings or {"content": ...} objects.
std::optional<std::string> config_token(const nlohmann::ordered_json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

// chat_template is a string, or a list of {"name", "template"} of which "default" is used.
std::optional<std::string> config_chat_template(const nlohmann::ordered_json& config) {
  if (!config.is_object() || !config.contains("chat_template")) return std::nullopt;
  const auto& t = config["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array())
    for (const auto& entry : t)
      if (entry.is_object() && entry.value("name", std::string()) == "default" && entry.contains("template"))
        return entry["template"].get<std::string>();
  return std::nullopt;
}

}  // namespace

Tokenizer Tokenizer::from_json(const nlohmann::json& tj, const nlohmann::ordered_json& config) {
  auto impl = std::make_shared<Impl>();
  if (!tj.is_object()) throw Error("tokenizer.json: top level must be an object");
  if (!tj.contains("model")) throw Error("tokenizer.json: \"model\" is missing");
  impl->model = std::make_unique<BpeModel>(tj["model"]);
  impl->normalizer = make_normalizer(tj.value("normalizer", nlohmann::json()));
  impl->pre_tokenizer = make_pre_tokenizer(tj.value("pre_tokenizer", nlohmann::json()));
  if (!impl->pre_tokenizer || !impl->pre_tokenizer->is_byte_level())
    throw Error("tokenizer.json: pre_tokenizer has no ByteLevel step (only byte-level BPE tokenizers are supported)");
  const auto decoder = tj.value("decoder", nlohmann::json());
  if (!decoder.is_null() && decoder.value("type", std::string()) != "ByteLevel")
    throw Error(str("tokenizer.json: unsupported decoder type '", decoder.value("type", std::string("?")),
                    "' (supported: ByteLevel)"));
  impl->added = AddedVocab(tj.value("added_tokens", nlohmann::json()));
  impl->special_wrap = make_special_wrap(tj.value("post_processor", nlohmann::json()));
  impl->vocab_size = std::max(impl->model->size(), impl->added.max_id() + 1);
  impl->id_bytes.assign(static_cast<size_t>(impl->vocab_size), nullptr);
  impl->id_special.assign(static_cast<size_t>(impl->vocab_size), 0);
  for (int32_t id = 0; id < impl->vocab_size; ++id) {
    if (const AddedToken* t = impl->added.find_id(id)) {
      impl->id_bytes[static_cast<size_t>(id)] = &t->content;
      impl->id_special[static_cast<size_t>(id)] = t->special;
    } else if (id < impl->model->size() && impl->model->has_id(id)) {
      impl->id_bytes[static_cast<size_t>(id)] = &impl->model->bytes_of(id);
    }
  }

  for (const char* key : {"bos_token", "eos_token", "pad_token", "unk_token"})
    if (auto t = config_token(config, key)) impl->template_tokens[key] = *t;
  if (auto eos = config_token(config, "eos_token")) {
    impl->eos_id = impl->added.find_content(*eos);
    if (!impl->eos_id) {
      if (auto id = impl->model->id_of(*eos)) impl->eos_id = *id;
    }
  }
  if (auto source = config_chat_template(config)) {
    impl->has_chat_template = true;
    try {
      impl->chat_template = std::make_shared<ChatTemplate>(*source);
    } catch (const Error& e) {
      impl->chat_template_error = e.what();  // reported when the template is used
    }
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::string& dir) {
  const std::string tj_path = dir + "/tokenizer.json", config_path = dir + "/tokenizer_config.json";
  nlohmann::json tj;
  {
    const std::string text = read_file(tj_path);
    try {
      tj = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(tj_path, ": malformed JSON: ", e.what()));
    }
  }
  nlohmann::ordered_json config;
  if (std::ifstream(config_path).good()) {
    const std::string text = read_file(config_path);
    try {
      config = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw Error(str(config_path, ": malformed JSON: ", e.what()));
    }
  }
  try {
    return from_json(tj, config);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str(tj_path, ": unexpected structure: ", e.what()));
  } catch (const Error& e) {
    throw Error(str(dir, ": ", e.what()));
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = utf8_lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = m.special_wrap.prefix;
  std::vector<Segment> segments;
  m.added.split(text, segments);
  Pieces pieces;
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string normalized;
    std::string_view body = seg.text;
    if (m.normalizer) {
      normalized = m.normalizer->apply(seg.text);
      body = normalized;
    }
    pieces.words.assign(1, body);
    pieces.storage.clear();
    m.pre_tokenizer->split(pieces);
    for (std::string_view w : pieces.words) m.model->encode_word(w, ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), m.special_wrap.suffix.begin(), m.special_wrap.suffix.end());
  return ids;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || id >= m.vocab_size)
    throw InvalidArgument(str("token id ", id, " is out of range [0, ", m.vocab_size, ")"));
  const std::string* bytes = m.id_bytes[static_cast<size_t>(id)];
  if (!bytes) throw InvalidArgument(str("token id ", id, " is not in the vocabulary"));
  return *bytes;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    bytes += token_bytes(id);
  }
  return utf8_lossy(bytes);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  if (auto id = impl_->added.find_content(token)) return id;
  if (auto bytes = byte_level_decode(token)) return impl_->model->id_of(*bytes);
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && impl_->id_special[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::eos_token_id() const { return impl_->eos_id; }

bool Tokenizer::has_chat_template() const { return impl_->has_chat_template; }

std::string Tokenizer::apply_chat_template(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                           bool add_generation_prompt, std::optional<bool> enable_thinking) const {
  const Impl& m = *impl_;
  if (!m.has_chat_template) throw InvalidArgument("this tokenizer has no chat template (tokenizer_config.json)");
  if (!m.chat_template) throw Error(str("chat template: ", m.chat_template_error));
  if (!messages.is_array()) throw InvalidArgument("chat messages must be a JSON array");
  if (!tools.is_null() && !tools.is_array()) throw InvalidArgument("chat tools must be a JSON array or null");
  nlohmann::ordered_json vars = m.template_tokens;
  vars["messages"] = messages;
  vars["tools"] = tools;
  vars["add_generation_prompt"] = add_generation_prompt;
  if (enable_thinking) vars["enable_thinking"] = *enable_thinking;
  return m.chat_template->render(vars);
}

std::string Tokenizer::apply_chat_template(const nlohmann::json& messages, const nlohmann::json& tools,
                                           bool add_generation_prompt, std::optional<bool> enable_thinking) const {
  return apply_chat_template(nlohmann::ordered_json(messages), nlohmann::ordered_json(tools), add_generation_prompt,
                             enable_thinking);
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDetokenizer::push(int32_t id) {
  const std::string& bytes = tokenizer_.token_bytes(id);  // validates the id even when skipped
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += bytes;
  std::string out;
  const size_t used = append_utf8_lossy(pending_, out, /*stop_at_incomplete_tail=*/true);
  pending_.erase(0, used);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace loom::tokenizer
