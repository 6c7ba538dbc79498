#include "jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "jinja/unicode.h"

namespace endless::jinja {

const Value* Dict::find(std::string_view key) const {
  auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

Value* Dict::find(std::string_view key) {
  auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

namespace {
thread_local int recursion_depth = 0;
constexpr int kMaxRecursion = 1000;

void check_nesting(uint32_t depth) {
  if (depth > kMaxNesting) throw_error("data is nested more than ", kMaxNesting, " levels deep");
}
}  // namespace

RecursionGuard::RecursionGuard() {
  if (++recursion_depth > kMaxRecursion) {
    --recursion_depth;
    throw_error("maximum recursion depth exceeded");
  }
}
RecursionGuard::~RecursionGuard() { --recursion_depth; }

uint32_t nesting_depth(const Value& v) {
  if (v.is_list()) return v.list().depth;
  if (v.is_dict()) return v.dict().depth();
  if (v.is_iterable()) return v.iterable().depth;
  return 0;
}

void Dict::set(const std::string& key, Value value) {
  const uint32_t depth = nesting_depth(value) + 1;
  check_nesting(depth);
  depth_ = std::max(depth_, depth);
  auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(value);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(key, std::move(value));
}

Value Value::list(std::vector<Value> items, bool is_tuple) {
  auto l = std::make_shared<List>();
  for (const auto& item : items) l->depth = std::max(l->depth, nesting_depth(item) + 1);
  check_nesting(l->depth);
  l->items = std::move(items);
  l->is_tuple = is_tuple;
  return Value(Storage(std::shared_ptr<const List>(std::move(l))));
}

Value Value::iterable(std::string type_name, std::vector<Value> items, bool single_use, std::string deferred_error) {
  auto it = std::make_shared<Iterable>();
  it->deferred_error = std::move(deferred_error);
  it->type_name = std::move(type_name);
  uint32_t depth = 1;
  for (const auto& item : items) depth = std::max(depth, nesting_depth(item) + 1);
  check_nesting(depth);
  it->depth = depth;
  it->items = std::move(items);
  it->single_use = single_use;
  return Value(Storage(std::shared_ptr<const Iterable>(std::move(it))));
}

Value Value::dict(Dict d) {
  return Value(Storage(std::shared_ptr<const Dict>(std::make_shared<Dict>(std::move(d)))));
}

Value Value::function(std::string name, std::function<Value(CallArgs&)> call, bool is_macro) {
  auto f = std::make_shared<Function>();
  f->name = std::move(name);
  f->is_macro = is_macro;
  f->call = std::move(call);
  return Value(Storage(std::move(f)));
}

Value undefined_name(std::string_view name) {
  return Value::undefined(python_string_repr(name) + " is undefined");
}

Value undefined_attribute(const Value& object, std::string_view name) {
  return Value::undefined(python_string_repr(object_type_repr(object)) + " has no attribute " +
                          python_string_repr(name));
}

Value undefined_element(const Value& object, const Value& key) {
  if (key.is_string()) return undefined_attribute(object, key.as_string());
  return Value::undefined(object_type_repr(object) + " has no element " + to_repr(key));
}

void fail_undefined(const Value& v) { throw Exception(v.undefined_message()); }

bool truthy(const Value& v) {
  return std::visit(
      [](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Undefined> || std::is_same_v<T, None>) return false;
        else if constexpr (std::is_same_v<T, bool>) return x;
        else if constexpr (std::is_same_v<T, int64_t>) return x != 0;
        else if constexpr (std::is_same_v<T, double>) return x != 0.0;
        else if constexpr (std::is_same_v<T, String>) return !x.text->empty();
        else if constexpr (std::is_same_v<T, std::shared_ptr<const List>>) return !x->items.empty();
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Dict>>) return x->size() != 0;
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Iterable>>) return x->single_use || !x->items.empty();
        else return true;
      },
      v.storage());
}

std::string python_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string s(buf, result.ptr);
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s.erase(0, 1);
  }
  const size_t e = s.find('e');
  const int exponent = std::stoi(s.substr(e + 1));
  std::string digits;
  for (char c : s.substr(0, e))
    if (c != '.') digits.push_back(c);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  // Python's repr: digits 0.d1d2... times 10**decpt; plain notation when -4 < decpt <= 16.
  const int decpt = exponent + 1;
  const int n = static_cast<int>(digits.size());
  std::string out;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) out = "0." + std::string(-decpt, '0') + digits;
    else if (decpt >= n) out = digits + std::string(decpt - n, '0') + ".0";
    else out = digits.substr(0, decpt) + "." + digits.substr(decpt);
  } else {
    out = digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    const int shown = decpt - 1;
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", shown < 0 ? '-' : '+', std::abs(shown));
    out += exp_buf;
  }
  return sign + out;
}

std::string python_string_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : unicode::decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c >= 0xDC80 && c <= 0xDCFF) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\udc%02x", static_cast<unsigned>(c & 0xFF));
      out += buf;
    } else if (!unicode::is_printable(c)) {
      char buf[16];
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      else std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      out += buf;
    } else {
      unicode::append_utf8(out, c);
    }
  }
  out.push_back(quote);
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

namespace {

std::string sequence_repr(const List& l) {
  RecursionGuard guard;
  std::string out = l.is_tuple ? "(" : "[";
  for (size_t i = 0; i < l.items.size(); ++i) {
    if (i) out += ", ";
    out += to_repr(l.items[i]);
  }
  if (l.is_tuple && l.items.size() == 1) out += ",";
  out += l.is_tuple ? ")" : "]";
  return out;
}

std::string dict_repr(const Dict& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : d.entries()) {
    if (!first) out += ", ";
    first = false;
    out += python_string_repr(k) + ": " + to_repr(v);
  }
  return out + "}";
}

std::string object_repr(const Object& o) {
  RecursionGuard guard;
  if (o.is_namespace) return "<Namespace " + dict_repr(o.attributes) + ">";
  const auto dot = o.type_name.rfind('.');
  return "<" + o.type_name.substr(dot == std::string::npos ? 0 : dot + 1) + " object>";
}

}  // namespace

std::string to_str(const Value& v) {
  if (v.is_string()) return v.as_string();
  if (v.is_undefined()) return "";
  return to_repr(v);
}

std::string to_repr(const Value& v) {
  if (v.is_markup()) return "Markup(" + python_string_repr(v.as_string()) + ")";
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Undefined>) return "Undefined";
        else if constexpr (std::is_same_v<T, None>) return "None";
        else if constexpr (std::is_same_v<T, bool>) return x ? "True" : "False";
        else if constexpr (std::is_same_v<T, int64_t>) return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return python_float_repr(x);
        else if constexpr (std::is_same_v<T, String>) return python_string_repr(*x.text);
        else if constexpr (std::is_same_v<T, std::shared_ptr<const List>>) return sequence_repr(*x);
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Dict>>) return dict_repr(*x);
        else if constexpr (std::is_same_v<T, std::shared_ptr<Function>>)
          return x->is_macro ? "<Macro " + python_string_repr(x->name) + ">"
                             : "<built-in function " + x->name + ">";
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Iterable>>) {
          if (x->single_use) return "<" + x->type_name + " object>";
          List view;
          view.items = x->items;
          return x->type_name + "(" + sequence_repr(view) + ")";
        } else return object_repr(*x);
      },
      v.storage());
}

std::string type_name(const Value& v) {
  if (v.is_markup()) return "Markup";
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Undefined>) return "Undefined";
        else if constexpr (std::is_same_v<T, None>) return "NoneType";
        else if constexpr (std::is_same_v<T, bool>) return "bool";
        else if constexpr (std::is_same_v<T, int64_t>) return "int";
        else if constexpr (std::is_same_v<T, double>) return "float";
        else if constexpr (std::is_same_v<T, String>) return "str";
        else if constexpr (std::is_same_v<T, std::shared_ptr<const List>>) return x->is_tuple ? "tuple" : "list";
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Dict>>) return "dict";
        else if constexpr (std::is_same_v<T, std::shared_ptr<Function>>)
          return x->is_macro ? "Macro" : "builtin_function_or_method";
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Iterable>>) return x->type_name;
        else {
          const auto dot = x->type_name.rfind('.');
          return x->type_name.substr(dot == std::string::npos ? 0 : dot + 1);
        }
      },
      v.storage());
}

std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_markup()) return "markupsafe.Markup object";
  if (v.is_object()) return v.object()->type_name + " object";
  if (v.is_function() && v.function().is_macro) return "jinja2.runtime.Macro object";
  if (v.is_undefined()) return "jinja2.runtime.Undefined object";
  return type_name(v) + " object";
}

bool equals(const Value& a, const Value& b) {
  RecursionGuard guard;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() == b.as_string();
  if (a.is_none() && b.is_none()) return true;
  if (a.is_undefined() && b.is_undefined()) return true;
  if (a.is_list() && b.is_list()) {
    const auto& la = a.list();
    const auto& lb = b.list();
    if (la.is_tuple != lb.is_tuple || la.items.size() != lb.items.size()) return false;
    for (size_t i = 0; i < la.items.size(); ++i)
      if (!equals(la.items[i], lb.items[i])) return false;
    return true;
  }
  if (a.is_dict() && b.is_dict()) {
    const auto& da = a.dict();
    const auto& db = b.dict();
    if (da.size() != db.size()) return false;
    for (const auto& [k, v] : da.entries()) {
      const Value* other = db.find(k);
      if (!other || !equals(v, *other)) return false;
    }
    return true;
  }
  if (a.is_function() && b.is_function()) return &a.function() == &b.function();
  if (a.is_object() && b.is_object()) return a.object() == b.object();
  if (a.is_iterable() && b.is_iterable()) return &a.iterable() == &b.iterable();
  return false;
}

int compare(const Value& a, const Value& b, std::string_view op) {
  RecursionGuard guard;
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_double(), y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& la = a.list().items;
    const auto& lb = b.list().items;
    for (size_t i = 0; i < la.size() && i < lb.size(); ++i) {
      if (equals(la[i], lb[i])) continue;
      return compare(la[i], lb[i], op);
    }
    return la.size() < lb.size() ? -1 : (la.size() > lb.size() ? 1 : 0);
  }
  throw_error("'", op, "' not supported between instances of '", type_name(a), "' and '",
              type_name(b), "'");
}

std::vector<Value> iterate(const Value& v) {
  if (v.is_list()) return v.list().items;
  if (v.is_dict()) {
    std::vector<Value> keys;
    keys.reserve(v.dict().size());
    for (const auto& entry : v.dict().entries()) keys.push_back(Value::string(entry.first));
    return keys;
  }
  if (v.is_string()) {
    std::vector<Value> chars;
    for (char32_t c : unicode::decode(v.as_string())) {
      std::string s;
      unicode::append_utf8(s, c);
      chars.push_back(Value::string(std::move(s)));
    }
    return chars;
  }
  if (v.is_iterable()) {
    const Iterable& it = v.iterable();
    if (!it.deferred_error.empty()) throw Exception(it.deferred_error);
    if (!it.single_use) return it.items;
    if (it.consumed) return {};
    it.consumed = true;
    return it.items;
  }
  if (v.is_undefined()) return {};
  throw_error("'", type_name(v), "' object is not iterable");
}

int64_t length(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(unicode::length(v.as_string()));
  if (v.is_list()) return static_cast<int64_t>(v.list().items.size());
  if (v.is_dict()) return static_cast<int64_t>(v.dict().size());
  if (v.is_iterable() && !v.iterable().single_use) return static_cast<int64_t>(v.iterable().items.size());
  if (v.is_undefined()) return 0;
  throw_error("object of type '", type_name(v), "' has no len()");
}

Value from_json(const nlohmann::ordered_json& j) {
  RecursionGuard guard;
  using nlohmann::ordered_json;
  switch (j.type()) {
    case ordered_json::value_t::null:
      return Value::none();
    case ordered_json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case ordered_json::value_t::number_integer:
      return Value::integer(j.get<int64_t>());
    case ordered_json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::number(static_cast<double>(u));
      return Value::integer(static_cast<int64_t>(u));
    }
    case ordered_json::value_t::number_float:
      return Value::number(j.get<double>());
    case ordered_json::value_t::string:
      return Value::string(j.get<std::string>());
    case ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(from_json(item));
      return Value::list(std::move(items));
    }
    case ordered_json::value_t::object: {
      Dict d;
      for (const auto& [k, v] : j.items()) d.set(k, from_json(v));
      return Value::dict(std::move(d));
    }
    default:
      throw_error("unsupported JSON value in the template context");
  }
}

namespace {

void json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

void json_value(std::string& out, const Value& v, const JsonFormat& f, int level) {
  RecursionGuard guard;
  auto newline = [&](int depth) {
    out.push_back('\n');
    for (int i = 0; i < depth; ++i) out += f.indent;
  };
  if (v.is_none()) {
    out += "null";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "true" : "false";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    const double d = v.as_double();
    if (std::isnan(d)) out += "NaN";
    else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
    else out += python_float_repr(d);
  } else if (v.is_string()) {
    json_string(out, v.as_string());
  } else if (v.is_list()) {
    const auto& items = v.list().items;
    if (items.empty()) {
      out += "[]";
      return;
    }
    out.push_back('[');
    if (f.has_indent) newline(level + 1);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) {
        out += f.item_separator;
        if (f.has_indent) newline(level + 1);
      }
      json_value(out, items[i], f, level + 1);
    }
    if (f.has_indent) newline(level);
    out.push_back(']');
  } else if (v.is_dict()) {
    const auto& d = v.dict();
    if (d.size() == 0) {
      out += "{}";
      return;
    }
    std::vector<const std::pair<std::string, Value>*> entries;
    for (const auto& e : d.entries()) entries.push_back(&e);
    if (f.sort_keys)
      std::sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
    out.push_back('{');
    if (f.has_indent) newline(level + 1);
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i) {
        out += f.item_separator;
        if (f.has_indent) newline(level + 1);
      }
      json_string(out, entries[i]->first);
      out += f.key_separator;
      json_value(out, entries[i]->second, f, level + 1);
    }
    if (f.has_indent) newline(level);
    out.push_back('}');
  } else {
    throw_error("Object of type ", type_name(v), " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonFormat& format) {
  std::string out;
  json_value(out, v, format, 0);
  return out;
}

}  // namespace endless::jinja
