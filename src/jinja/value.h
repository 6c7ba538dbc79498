// The interpreter's value type: Python's data model as far as chat templates see it.
// Lists and dicts are immutable once built (the sandbox forbids mutating methods), so they are
// shared by pointer; only namespace() objects are mutable, through `{% set ns.attr = ... %}`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "jinja/jinja.h"

namespace endless::jinja {

class Value;

// Raises a template error (the equivalent of the Python exception Jinja2 would raise).
template <typename... Args>
[[noreturn]] void throw_error(const Args&... args) {
  throw Exception(endless::cat(args...));
}

struct Undefined {
  // What Jinja2 says when the undefined value is used: "'x' is undefined",
  // "'dict object' has no attribute 'y'", ...
  std::string message;
};

struct None {};

// Strings are shared immutable buffers, so passing long message contents around copies nothing.
struct String {
  std::shared_ptr<const std::string> text;
};

// Containers are at most this deeply nested, so that printing, comparing and destroying them
// recurses a bounded number of times.
inline constexpr uint32_t kMaxNesting = 500;

struct List {
  std::vector<Value> items;
  bool is_tuple = false;
  uint32_t depth = 1;
};

// A lazy Python iterable that Jinja2 filters and dict methods return: "generator" (map, select,
// items, ...), "list_reverseiterator" (reverse), "dict_items"/"dict_keys"/"dict_values" views.
// They iterate like lists but cannot be indexed or serialized to JSON; generators and iterators
// are exhausted by one iteration and are true even when empty.
struct Iterable {
  std::string type_name;
  std::vector<Value> items;
  bool single_use = false;
  mutable bool consumed = false;
  uint32_t depth = 1;
  // Raised when iterated: Python generators report errors only once they run.
  std::string deferred_error;
};

// An insertion-ordered dict with string keys (JSON objects and dict literals).
class Dict {
 public:
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(const std::string& key, Value value);
  size_t size() const { return entries_.size(); }
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
  uint32_t depth() const { return depth_; }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
  uint32_t depth_ = 1;
  std::unordered_map<std::string, size_t> index_;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Macros, builtin functions and bound methods.
struct Function {
  std::string name;
  // Macros print as <Macro 'name'>, builtins as <built-in function name>.
  bool is_macro = false;
  std::function<Value(CallArgs&)> call;
};

// The state behind a for loop's `loop` variable; its attributes are computed on access.
struct LoopState {
  std::vector<Value> items;
  int64_t index0 = 0;
  std::vector<Value> last_changed;
  bool changed_called = false;
};

// Attribute-bearing objects: namespace() and the loop variable.
struct Object {
  // Python's qualified type name, used in error messages: "jinja2.utils.Namespace".
  std::string type_name;
  bool is_namespace = false;
  Dict attributes;
  std::shared_ptr<LoopState> loop;
};

class Value {
 public:
  using Storage = std::variant<Undefined, None, bool, int64_t, double, String,
                               std::shared_ptr<const List>, std::shared_ptr<const Dict>,
                               std::shared_ptr<Function>, std::shared_ptr<Object>,
                               std::shared_ptr<const Iterable>>;

  Value() : storage_(Undefined{"undefined value"}) {}

  static Value undefined(std::string message) { return Value(Storage(Undefined{std::move(message)})); }
  static Value none() { return Value(Storage(None{})); }
  static Value boolean(bool b) { return Value(Storage(b)); }
  static Value integer(int64_t i) { return Value(Storage(i)); }
  static Value number(double d) { return Value(Storage(d)); }
  static Value string(std::string s) { return Value(Storage(String{std::make_shared<const std::string>(std::move(s))})); }
  // markupsafe.Markup: a string marked safe; `Markup + str` HTML-escapes the str.
  static Value markup(std::string s) {
    Value v = string(std::move(s));
    v.markup_ = true;
    return v;
  }
  static Value list(std::vector<Value> items, bool is_tuple = false);
  static Value dict(Dict d);
  static Value function(std::string name, std::function<Value(CallArgs&)> call, bool is_macro = false);
  static Value object(std::shared_ptr<Object> o) { return Value(Storage(std::move(o))); }
  static Value iterable(std::string type_name, std::vector<Value> items, bool single_use,
                        std::string deferred_error = {});
  static Value generator(std::vector<Value> items) { return iterable("generator", std::move(items), true); }

  bool is_undefined() const { return std::holds_alternative<Undefined>(storage_); }
  bool is_none() const { return std::holds_alternative<None>(storage_); }
  bool is_bool() const { return std::holds_alternative<bool>(storage_); }
  bool is_int() const { return std::holds_alternative<int64_t>(storage_); }
  bool is_float() const { return std::holds_alternative<double>(storage_); }
  bool is_string() const { return std::holds_alternative<String>(storage_); }
  bool is_markup() const { return markup_ && is_string(); }
  bool is_list() const { return std::holds_alternative<std::shared_ptr<const List>>(storage_); }
  bool is_tuple() const { return is_list() && list().is_tuple; }
  bool is_dict() const { return std::holds_alternative<std::shared_ptr<const Dict>>(storage_); }
  bool is_function() const { return std::holds_alternative<std::shared_ptr<Function>>(storage_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(storage_); }
  bool is_iterable() const { return std::holds_alternative<std::shared_ptr<const Iterable>>(storage_); }
  // Python's int includes bool; numbers include both.
  bool is_integral() const { return is_int() || is_bool(); }
  bool is_number() const { return is_integral() || is_float(); }

  bool as_bool() const { return std::get<bool>(storage_); }
  // The int value of an int or bool.
  int64_t as_int() const { return is_bool() ? (as_bool() ? 1 : 0) : std::get<int64_t>(storage_); }
  double as_double() const { return is_float() ? std::get<double>(storage_) : static_cast<double>(as_int()); }
  const std::string& as_string() const { return *std::get<String>(storage_).text; }
  const List& list() const { return *std::get<std::shared_ptr<const List>>(storage_); }
  const Dict& dict() const { return *std::get<std::shared_ptr<const Dict>>(storage_); }
  Function& function() const { return *std::get<std::shared_ptr<Function>>(storage_); }
  const std::shared_ptr<Object>& object() const { return std::get<std::shared_ptr<Object>>(storage_); }
  const Iterable& iterable() const { return *std::get<std::shared_ptr<const Iterable>>(storage_); }
  const std::string& undefined_message() const { return std::get<Undefined>(storage_).message; }

  const Storage& storage() const { return storage_; }

 private:
  explicit Value(Storage s) : storage_(std::move(s)) {}
  Storage storage_;
  bool markup_ = false;
};

// How deeply a list or dict nests (0 for scalars).
uint32_t nesting_depth(const Value& v);

// Guards recursion over values that may be cyclic (namespaces can contain themselves).
class RecursionGuard {
 public:
  RecursionGuard();
  ~RecursionGuard();
  RecursionGuard(const RecursionGuard&) = delete;
  RecursionGuard& operator=(const RecursionGuard&) = delete;
};

// Messages of Jinja2's Undefined, word for word.
Value undefined_name(std::string_view name);
Value undefined_attribute(const Value& object, std::string_view name);
Value undefined_element(const Value& object, const Value& key);

// Raises the error an undefined value stands for.
[[noreturn]] void fail_undefined(const Value& v);

// Python's bool(), str(), repr() and type(x).__name__.
bool truthy(const Value& v);
std::string to_str(const Value& v);
std::string to_repr(const Value& v);
std::string type_name(const Value& v);
// Jinja2's object_type_repr: "dict object", "None", "jinja2.utils.Namespace object".
std::string object_type_repr(const Value& v);
std::string python_float_repr(double d);
std::string python_string_repr(std::string_view s);
// markupsafe.escape: & < > " ' as HTML entities.
std::string html_escape(std::string_view s);

// Python's == and ordering (<0, 0, >0); ordering raises TypeError-like errors across types.
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b, std::string_view op);

// Python's iter(): list items, dict keys, string characters; Undefined iterates as empty.
std::vector<Value> iterate(const Value& v);
// Python's len().
int64_t length(const Value& v);

Value from_json(const nlohmann::ordered_json& j);

struct JsonFormat {
  // Python's json.dumps indent: none, a number of spaces, or a literal string.
  bool has_indent = false;
  std::string indent;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
// json.dumps(v, ensure_ascii=False, ...).
std::string to_json(const Value& v, const JsonFormat& format);

}  // namespace endless::jinja
