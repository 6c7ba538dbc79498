// Errors a request can cause, with the HTTP status and OpenAI error object they are answered with:
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace endless::server {

class HttpError : public Error {
 public:
  HttpError(int status, const std::string& message, std::string code = {}, std::string param = {})
      : Error(message), status_(status), code_(std::move(code)), param_(std::move(param)) {}

  int status() const { return status_; }
  const std::string& code() const { return code_; }
  const std::string& param() const { return param_; }

 private:
  int status_;
  std::string code_;
  std::string param_;
};

// OpenAI's error `type` for a status.
inline const char* error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

inline nlohmann::ordered_json error_json(int status, const std::string& message, const std::string& code = {},
                                         const std::string& param = {}) {
  nlohmann::ordered_json e = {{"message", message},
                              {"type", error_type(status)},
                              {"param", param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param)},
                              {"code", code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(code)}};
  return {{"error", e}};
}

inline nlohmann::ordered_json error_json(const HttpError& e) {
  return error_json(e.status(), e.what(), e.code(), e.param());
}

template <typename... Args>
[[noreturn]] void bad_request(const Args&... args) {
  throw HttpError(400, cat(args...));
}

}  // namespace endless::server
