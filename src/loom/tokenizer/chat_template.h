// A chat template: Jinja source from tokenizer_config.json, parsed once and rendered per request
// with the variables Hugging Face transformers passes (messages, tools, add_generation_prompt,
// enable_thinking, bos_token, eos_token, ...). Rendering uses transformers' Jinja settings:
// trim_blocks and lstrip_blocks on, loop controls (break/continue) enabled.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace loom::tokenizer {

namespace jinja {
struct Template;
}

class ChatTemplate {
 public:
  // Throws loom::Error naming the unsupported construct or syntax error and its line.
  explicit ChatTemplate(const std::string& source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;

  // variables: an object whose members become the template's global variables.
  // raise_exception(...) in the template throws loom::InvalidArgument with its message.
  std::string render(const nlohmann::ordered_json& variables) const;

 private:
  std::unique_ptr<jinja::Template> template_;
};

}  // namespace loom::tokenizer
