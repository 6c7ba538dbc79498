#include "server/request.h"

#include <cmath>
#include <random>

namespace endless::server {
namespace {

const char* type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    default: return "a number";
  }
}

const Json* field(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void wrong_type(const char* key, const char* expected, const Json& v) {
  throw HttpError(400, cat("'", key, "' must be ", expected, ", not ", type_name(v)), "invalid_type", key);
}

uint64_t random_u64() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

}  // namespace

Json parse_body(const std::string& body) {
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::parse_error& e) {
    // nlohmann's message names the byte where parsing stopped.
    std::string what = e.what();
    const auto pos = what.find("parse error");
    throw HttpError(400, "the request body is not valid JSON: " + (pos == std::string::npos ? what : what.substr(pos)),
                    "invalid_json");
  }
  if (!j.is_object()) throw HttpError(400, cat("the request body must be a JSON object, not ", type_name(j)), "invalid_json");
  return j;
}

std::optional<int64_t> get_int(const Json& j, const char* key, int64_t lo, int64_t hi) {
  const Json* v = field(j, key);
  if (!v) return std::nullopt;
  int64_t x;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw HttpError(400, cat("'", key, "' must be between ", lo, " and ", hi), "invalid_value", key);
    x = v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             v->get<double>() == std::floor(v->get<double>()) && std::fabs(v->get<double>()) < 9e15) {
    x = static_cast<int64_t>(v->get<double>());
  } else {
    wrong_type(key, "an integer", *v);
  }
  if (x < lo || x > hi)
    throw HttpError(400, cat("'", key, "' must be between ", lo, " and ", hi, ", got ", x), "invalid_value", key);
  return x;
}

std::optional<double> get_number(const Json& j, const char* key, double lo, double hi) {
  const Json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(key, "a number", *v);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw HttpError(400, cat("'", key, "' must be between ", lo, " and ", hi, ", got ", x), "invalid_value", key);
  return x;
}

std::optional<bool> get_bool(const Json& j, const char* key) {
  const Json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(key, "a boolean", *v);
  return v->get<bool>();
}

std::optional<std::string> get_string(const Json& j, const char* key) {
  const Json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(key, "a string", *v);
  return v->get<std::string>();
}

GenerationParams parse_generation(const Json& body, int default_max_tokens, const Limits& limits) {
  GenerationParams p;
  p.sampling.temperature = 1.0f;  // OpenAI's defaults: plain sampling from the softmax
  p.sampling.top_k = 0;
  p.sampling.top_p = 1.0f;
  p.sampling.min_p = 0.0f;
  p.sampling.repeat_penalty = 1.0f;

  auto max_tokens = get_int(body, "max_tokens", 1, INT32_MAX);
  if (auto m = get_int(body, "max_completion_tokens", 1, INT32_MAX)) max_tokens = m;
  p.max_tokens = static_cast<int>(max_tokens.value_or(std::min(default_max_tokens, limits.max_tokens)));
  if (p.max_tokens > limits.max_tokens)
    throw HttpError(400, cat("max_tokens is ", p.max_tokens, " but this server allows at most ", limits.max_tokens),
                    "max_tokens_exceeded", "max_tokens");
  if (auto t = get_number(body, "temperature", 0, 100)) p.sampling.temperature = static_cast<float>(*t);
  if (auto t = get_number(body, "top_p", 0, 1)) p.sampling.top_p = static_cast<float>(*t);
  if (auto t = get_int(body, "top_k", 0, INT32_MAX)) p.sampling.top_k = static_cast<int>(*t);
  if (auto t = get_number(body, "min_p", 0, 1)) p.sampling.min_p = static_cast<float>(*t);
  if (auto t = get_number(body, "repeat_penalty", 0.001, 100)) p.sampling.repeat_penalty = static_cast<float>(*t);
  if (auto t = get_int(body, "repeat_last_n", 0, 256)) p.sampling.repeat_last_n = static_cast<int>(*t);
  if (auto s = get_int(body, "seed", INT64_MIN, INT64_MAX))
    p.sampling.seed = static_cast<uint64_t>(*s);
  else
    p.sampling.seed = random_u64();
  if (auto b = get_bool(body, "ignore_eos")) p.ignore_eos = *b;

  if (const Json* stop = field(body, "stop")) {
    if (stop->is_string()) {
      p.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > 4) throw HttpError(400, "'stop' may hold at most 4 strings", "invalid_value", "stop");
      for (const auto& s : *stop) {
        if (!s.is_string()) throw HttpError(400, "'stop' must be a string or an array of strings", "invalid_type", "stop");
        p.stop.push_back(s.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings", *stop);
    }
    for (const auto& s : p.stop)
      if (s.empty()) throw HttpError(400, "'stop' strings must not be empty", "invalid_value", "stop");
  }

  if (auto n = get_int(body, "n", 1, 128); n && *n != 1)
    throw HttpError(400, "only n = 1 is supported", "unsupported_value", "n");
  if (auto b = get_int(body, "best_of", 1, 128); b && *b != 1)
    throw HttpError(400, "only best_of = 1 is supported", "unsupported_value", "best_of");
  if (auto e = get_bool(body, "echo"); e && *e)
    throw HttpError(400, "'echo' is not supported", "unsupported_value", "echo");
  if (const Json* lp = field(body, "logprobs"); lp && !(lp->is_boolean() && !lp->get<bool>()))
    throw HttpError(400, "'logprobs' is not supported", "unsupported_value", "logprobs");
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (auto v = get_number(body, key, -2, 2); v && *v != 0)
      throw HttpError(400, cat("'", key, "' is not supported (use repeat_penalty)"), "unsupported_value", key);
  if (const Json* lb = field(body, "logit_bias"); lb && !(lb->is_object() && lb->empty()))
    throw HttpError(400, "'logit_bias' is not supported", "unsupported_value", "logit_bias");
  get_string(body, "model");
  get_string(body, "user");
  wants_stream(body);
  wants_usage(body);
  try {
    p.sampling.validate();
  } catch (const Error& e) {
    throw HttpError(400, e.what(), "invalid_value");
  }
  return p;
}

bool wants_stream(const Json& body) { return get_bool(body, "stream").value_or(false); }

bool wants_usage(const Json& body) {
  const Json* so = field(body, "stream_options");
  if (!so) return false;
  if (!so->is_object()) wrong_type("stream_options", "an object", *so);
  return get_bool(*so, "include_usage").value_or(false);
}

std::string random_id(const std::string& prefix) {
  static const char hex[] = "0123456789abcdef";
  std::string id = prefix;
  uint64_t a = random_u64(), b = random_u64();
  for (int i = 0; i < 12; ++i, a >>= 4) id += hex[a & 15];
  for (int i = 0; i < 12; ++i, b >>= 4) id += hex[b & 15];
  return id;
}

}  // namespace endless::server
