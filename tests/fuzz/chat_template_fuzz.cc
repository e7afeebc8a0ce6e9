// The real Qwen3 chat template over arbitrary message lists (and tools): the input is JSON; a
// template that rejects it throws loom::Error (InvalidArgument or a template error), never
// anything else, never a crash.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_data.h"
#include "loom/tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  nlohmann::ordered_json messages = j, tools;
  if (j.is_object() && j.contains("messages")) {
    messages = j["messages"];
    if (j.contains("tools")) tools = j["tools"];
  }
  if (!messages.is_array()) messages = nlohmann::ordered_json::array({messages});
  try {
    (void)loom::fuzz::qwen3().apply_chat_template(messages, tools, true, std::nullopt);
    (void)loom::fuzz::qwen3().apply_chat_template(messages, tools, false, false);
  } catch (const loom::Error&) {
  }
  return 0;
}
