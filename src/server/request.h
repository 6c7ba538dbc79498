// Reading request bodies: JSON parsing and typed fields, each wrong type or out-of-range value a
// 400 naming the field, and the OpenAI sampling fields as GenerationParams.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/scheduler.h"

namespace endless::server {

using Json = nlohmann::ordered_json;

// The body as a JSON object; 400 for invalid JSON or anything but an object.
Json parse_body(const std::string& body);

// Typed optional fields: absent or null gives nullopt; anything else of the wrong type or out of
// [lo, hi] is a 400 naming the field.
std::optional<int64_t> get_int(const Json& j, const char* key, int64_t lo, int64_t hi);
std::optional<double> get_number(const Json& j, const char* key, double lo, double hi);
std::optional<bool> get_bool(const Json& j, const char* key);
std::optional<std::string> get_string(const Json& j, const char* key);

struct Limits {
  int max_tokens = 4096;  // most tokens one request may ask for
  int64_t n_vocab = 0;
};

// OpenAI's sampling fields: max_tokens (or max_completion_tokens), temperature, top_p, seed,
// stop, n (1 only); extensions top_k, min_p, repeat_penalty, repeat_last_n, ignore_eos. Fields we
// do not implement are rejected when set to anything but their neutral value.
GenerationParams parse_generation(const Json& body, int default_max_tokens, const Limits& limits);

// "stream": true, and "stream_options": {"include_usage": true}.
bool wants_stream(const Json& body);
bool wants_usage(const Json& body);

// A fresh random id with a prefix: "cmpl-3f9a...".
std::string random_id(const std::string& prefix);

}  // namespace endless::server
