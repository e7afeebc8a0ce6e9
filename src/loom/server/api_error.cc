#include "loom/server/api_error.h"

namespace loom::server {

nlohmann::json error_body(const std::string& type, const std::string& message, const std::string& param,
                          const std::string& code) {
  nlohmann::json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return {{"error", e}};
}

nlohmann::json ApiError::body() const { return error_body(type_, what(), param_, code_); }

}  // namespace loom::server
