// An HTTP error with an OpenAI-shaped body: {"error": {"message", "type", "param", "code"}}.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "loom/tensor/error.h"

namespace loom::server {

class ApiError : public Error {
 public:
  ApiError(int status, std::string type, std::string message, std::string param = "", std::string code = "")
      : Error(message), status_(status), type_(std::move(type)), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  nlohmann::json body() const;

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error for field `param`.
inline ApiError bad_request(const std::string& param, const std::string& message) {
  return ApiError(400, "invalid_request_error", message, param);
}

// The body for an error; empty param/code become null.
nlohmann::json error_body(const std::string& type, const std::string& message, const std::string& param,
                          const std::string& code);

}  // namespace loom::server
