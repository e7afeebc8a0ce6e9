#include "loom/tokenizer/chat_template.h"

#include "loom/tokenizer/jinja_builtins.h"
#include "loom/tokenizer/jinja_eval.h"
#include "loom/tokenizer/jinja_parser.h"

namespace loom::tokenizer {

ChatTemplate::ChatTemplate(const std::string& source)
    : template_(std::make_unique<jinja::Template>(jinja::parse(source))) {}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& variables) const {
  jinja::Object globals;
  jinja::add_global_functions(globals);
  if (variables.is_object())
    for (auto it = variables.begin(); it != variables.end(); ++it) globals.set(it.key(), jinja::from_json(it.value()));
  return jinja::render(*template_, globals);
}

}  // namespace loom::tokenizer
