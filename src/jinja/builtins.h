// Jinja2's builtin filters and tests, the Python methods templates call on str/dict/list, and
// the globals Hugging Face provides (range, namespace, dict, raise_exception, strftime_now).
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "jinja/value.h"

namespace endless::jinja {

class Interpreter;
class Scope;

bool is_filter(std::string_view name);
bool is_test(std::string_view name);

Value call_filter(Interpreter& interp, const std::string& name, Value input, CallArgs& args);
bool call_test(Interpreter& interp, const std::string& name, const Value& input, CallArgs& args);

// The bound method `object.name` of a str, dict or list; an Undefined carrying the sandbox's
// message for mutating methods; nullopt when the type has no such method.
std::optional<Value> find_method(Interpreter& interp, const Value& object, const std::string& name);

void install_globals(Interpreter& interp, Scope& scope);

// Binds call arguments to named parameters the way Python does for a builtin's signature.
class Arguments {
 public:
  Arguments(std::string_view function, const CallArgs& args, std::initializer_list<std::string_view> params);
  bool has(size_t i) const { return bound_[i] != nullptr; }
  const Value& get(size_t i) const { return *bound_[i]; }
  Value get_or(size_t i, Value fallback) const { return has(i) ? *bound_[i] : std::move(fallback); }
  // Argument i as an int (bools count), or `fallback` when absent.
  int64_t get_int(size_t i, int64_t fallback) const;
  bool get_bool(size_t i, bool fallback) const;
  std::string get_string(size_t i, std::string fallback) const;

 private:
  std::string function_;
  std::vector<std::string_view> params_;
  std::vector<const Value*> bound_;
};

}  // namespace endless::jinja
