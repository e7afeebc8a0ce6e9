// config.json of a malicious checkpoint: ModelConfig::from_json throws loom::Error or returns a
// config, never anything else.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "loom/io/model_config.h"
#include "loom/tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j =
      nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data), size), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    (void)loom::io::ModelConfig::from_json(j, "fuzz/config.json");
  } catch (const loom::Error&) {
  }
  return 0;
}
