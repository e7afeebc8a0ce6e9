// `loom chat-template --tokenizer DIR --messages FILE.json [--tools FILE.json]
//  [--no-generation-prompt] [--enable-thinking true|false]` prints {"text": "...", "ids": [...]}.
#include <cstdio>

#include "loom/cli/tokenizer_flags.h"
#include "loom/tensor/error.h"

namespace loom::cli {

int cmd_chat_template(Args& args) {
  const auto messages = read_json_flag_file("messages", args.required("messages"));
  if (!messages.is_array()) throw InvalidArgument("--messages: the file must hold a JSON array of messages");
  nlohmann::ordered_json tools;
  if (args.has("tools")) {
    tools = read_json_flag_file("tools", args.required("tools"));
    if (!tools.is_array()) throw InvalidArgument("--tools: the file must hold a JSON array of tools");
  }
  const bool generation_prompt = !args.flag("no-generation-prompt");
  std::optional<bool> thinking;
  if (args.has("enable-thinking")) thinking = args.flag("enable-thinking");
  const std::string dir = args.required("tokenizer");
  args.finish();
  const auto tok = load_tokenizer_flag(dir);
  if (!tok.has_chat_template()) throw InvalidArgument("--tokenizer: tokenizer_config.json has no chat_template");
  const std::string text = tok.apply_chat_template(messages, tools, generation_prompt, thinking);
  nlohmann::ordered_json out;
  out["text"] = text;
  out["ids"] = tok.encode(text);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace loom::cli
