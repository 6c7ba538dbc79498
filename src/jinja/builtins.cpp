#include "jinja/builtins.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "jinja/interpreter.h"
#include "jinja/unicode.h"

namespace endless::jinja {

// ---------------------------------------------------------------------------------------------
// Argument binding

Arguments::Arguments(std::string_view function, const CallArgs& args, std::initializer_list<std::string_view> params)
    : function_(function), params_(params), bound_(params.size(), nullptr) {
  if (args.positional.size() > params_.size())
    throw_error(function_, "() takes at most ", params_.size(), " argument(s) (", args.positional.size(), " given)");
  for (size_t i = 0; i < args.positional.size(); ++i) bound_[i] = &args.positional[i];
  for (const auto& [key, value] : args.keyword) {
    auto it = std::find(params_.begin(), params_.end(), key);
    if (it == params_.end()) throw_error(function_, "() got an unexpected keyword argument '", key, "'");
    const auto i = static_cast<size_t>(it - params_.begin());
    if (bound_[i]) throw_error(function_, "() got multiple values for argument '", key, "'");
    bound_[i] = &value;
  }
}

int64_t Arguments::get_int(size_t i, int64_t fallback) const {
  if (!has(i) || get(i).is_none()) return fallback;
  if (!get(i).is_integral())
    throw_error(function_, "(): '", type_name(get(i)), "' object cannot be interpreted as an integer");
  return get(i).as_int();
}

bool Arguments::get_bool(size_t i, bool fallback) const { return has(i) ? truthy(get(i)) : fallback; }

std::string Arguments::get_string(size_t i, std::string fallback) const {
  if (!has(i)) return fallback;
  return to_str(get(i));
}

namespace {

using unicode::decode;
using unicode::encode;

// ---------------------------------------------------------------------------------------------
// Helpers shared by filters and methods

// A string result that stays Markup when its source was (markupsafe's str methods do).
Value like(const Value& source, std::string s) {
  return source.is_markup() ? Value::markup(std::move(s)) : Value::string(std::move(s));
}

// soft_str: strings stay as they are (Markup included), everything else goes through str().
Value soft_str(const Value& v) { return v.is_string() ? v : Value::string(to_str(v)); }

// An argument that must be a str; `context` prefixes Python's message ("replace() argument 1 ").
const std::string& require_string(const Value& v, std::string_view context = "") {
  if (!v.is_string()) throw_error(context, "must be str, not ", type_name(v));
  return v.as_string();
}

// Code point index of a byte offset.
int64_t cp_index(const std::string& s, size_t byte_offset) {
  return static_cast<int64_t>(unicode::length(std::string_view(s).substr(0, byte_offset)));
}

std::optional<int64_t> parse_python_int(std::string_view text, int base) {
  std::string_view s = unicode::strip(text);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  auto has_prefix = [&](char a, char b) { return s.size() >= 2 && s[0] == '0' && (s[1] == a || s[1] == b); };
  if (base == 0) {
    base = has_prefix('x', 'X') ? 16 : has_prefix('o', 'O') ? 8 : has_prefix('b', 'B') ? 2 : 10;
    if (base != 10) s.remove_prefix(2);
  } else if ((base == 16 && has_prefix('x', 'X')) || (base == 8 && has_prefix('o', 'O')) ||
             (base == 2 && has_prefix('b', 'B'))) {
    s.remove_prefix(2);
    if (!s.empty() && s[0] == '_') s.remove_prefix(1);
  }
  if (base < 2 || base > 36 || s.empty()) return std::nullopt;
  int64_t value = 0;
  bool previous_digit = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (!previous_digit || i + 1 == s.size()) return std::nullopt;
      previous_digit = false;
      continue;
    }
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z') d = c - 'A' + 10;
    else return std::nullopt;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(value, base, &value) || __builtin_add_overflow(value, d, &value))
      throw_error("integer overflow");
    previous_digit = true;
  }
  return negative ? -value : value;
}

std::optional<double> parse_python_float(std::string_view text) {
  std::string_view s = unicode::strip(text);
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 == s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return std::nullopt;
      continue;
    }
    clean.push_back(s[i]);
  }
  std::string lower = unicode::to_lower(clean);
  std::string_view body = lower;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.remove_prefix(1);
  if (body == "inf" || body == "infinity" || body == "nan") return std::strtod(lower.c_str(), nullptr);
  // digits [. digits] [e [sign] digits], with at least one digit in the mantissa
  size_t i = 0, mantissa_digits = 0;
  while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++mantissa_digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++mantissa_digits;
  }
  if (mantissa_digits == 0) return std::nullopt;
  if (i < body.size() && body[i] == 'e') {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != body.size()) return std::nullopt;
  return std::strtod(clean.c_str(), nullptr);
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& replacement, int64_t count,
                       Interpreter& interp) {
  std::string out;
  if (old.empty()) {
    // Python inserts the replacement before every character and at the end.
    const auto cps = decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += replacement;
        ++done;
      }
      if (i < cps.size()) unicode::append_utf8(out, cps[i]);
      interp.check_size(out.size());
    }
    interp.produced(out.size());
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = s.find(old, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += replacement;
    interp.check_size(out.size());
    pos = hit + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  interp.produced(out.size());
  return out;
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep.is_none() || sep.is_undefined()) {
    const auto cps = decode(s);
    std::vector<std::pair<size_t, size_t>> words;  // code point ranges
    if (!from_right) {
      size_t i = 0;
      while (i < cps.size()) {
        while (i < cps.size() && unicode::is_space(cps[i])) ++i;
        if (i >= cps.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
          size_t end = cps.size();
          words.emplace_back(i, end);
          break;
        }
        size_t j = i;
        while (j < cps.size() && !unicode::is_space(cps[j])) ++j;
        words.emplace_back(i, j);
        i = j;
      }
    } else {
      size_t i = cps.size();
      while (i > 0) {
        while (i > 0 && unicode::is_space(cps[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
          words.emplace_back(0, i);
          break;
        }
        size_t j = i;
        while (j > 0 && !unicode::is_space(cps[j - 1])) --j;
        words.emplace_back(j, i);
        i = j;
      }
      std::reverse(words.begin(), words.end());
    }
    for (auto [a, b] : words)
      parts.push_back(encode(std::vector<char32_t>(cps.begin() + static_cast<std::ptrdiff_t>(a),
                                                   cps.begin() + static_cast<std::ptrdiff_t>(b))));
    return parts;
  }
  if (!sep.is_string()) throw_error("must be str or None, not ", type_name(sep));
  const std::string& separator = sep.as_string();
  if (separator.empty()) throw_error("empty separator");
  if (!from_right) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      const size_t hit = s.find(separator, pos);
      if (hit == std::string::npos) break;
      parts.push_back(s.substr(pos, hit - pos));
      pos = hit + separator.size();
    }
    parts.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    std::vector<std::string> reversed;
    while (maxsplit < 0 || static_cast<int64_t>(reversed.size()) < maxsplit) {
      if (end < separator.size()) break;
      const size_t hit = s.rfind(separator, end - separator.size());
      if (hit == std::string::npos) break;
      reversed.push_back(s.substr(hit + separator.size(), end - hit - separator.size()));
      end = hit;
    }
    reversed.push_back(s.substr(0, end));
    parts.assign(reversed.rbegin(), reversed.rend());
  }
  return parts;
}

Value string_list(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::string(std::move(p)));
  return Value::list(std::move(items));
}

std::string pad(const std::string& s, int64_t width, const std::string& fill, char align) {
  const auto len = static_cast<int64_t>(unicode::length(s));
  if (width <= len) return s;
  const int64_t margin = std::min<int64_t>(width - len, 1 << 24);
  int64_t left = 0;
  if (align == '>') left = margin;
  else if (align == '^') left = margin / 2 + (margin & width & 1);
  const int64_t right = margin - left;
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < right; ++i) out += fill;
  return out;
}

std::string html_escape_value(const Value& v) { return v.is_markup() ? v.as_string() : html_escape(to_str(v)); }

// Python's round(x, ndigits) for floats: correctly rounded, ties to even.
double round_float(double x, int64_t digits) {
  if (!std::isfinite(x)) return x;
  if (digits == 0) return std::nearbyint(x);
  if (digits > 0) {
    if (digits > 300) return x;
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(digits), x);
    return std::strtod(buf, nullptr);
  }
  if (digits < -308) return 0.0 * x;
  const double scale = std::pow(10.0, static_cast<double>(-digits));
  return std::nearbyint(x / scale) * scale;
}

// Jinja2's make_attrgetter: "a.b.0" walks items (digits become indexes).
Value get_path(Interpreter& interp, Value item, const Value& attribute, const Value* fallback) {
  std::vector<Value> parts;
  if (attribute.is_string()) {
    for (auto& part : py_split(attribute.as_string(), Value::string("."), -1, false)) {
      const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (digits) parts.push_back(Value::integer(std::strtoll(part.c_str(), nullptr, 10)));
      else parts.push_back(Value::string(std::move(part)));
    }
  } else if (!attribute.is_none() && !attribute.is_undefined()) {
    parts.push_back(attribute);
  }
  for (const auto& part : parts) {
    item = interp.get_item(item, part);
    if (fallback && item.is_undefined()) item = *fallback;
  }
  return item;
}

Value ignore_case(const Value& v) { return v.is_string() ? Value::string(unicode::to_lower(v.as_string())) : v; }

Value json_dumps(const Value& input, const Arguments& a) {
  JsonFormat format;
  const bool ensure_ascii = a.get_bool(0, false);
  if (a.has(1) && !a.get(1).is_none()) {
    format.has_indent = true;
    const Value& indent = a.get(1);
    if (indent.is_string()) format.indent = indent.as_string();
    else if (indent.is_integral()) format.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(indent.as_int(), 0, 256)), ' ');
    else throw_error("tojson(): indent must be an integer or a string");
    format.item_separator = ",";
  }
  if (a.has(2) && !a.get(2).is_none()) {
    const auto seps = iterate(a.get(2));
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string())
      throw_error("tojson(): separators must be a pair of strings");
    format.item_separator = seps[0].as_string();
    format.key_separator = seps[1].as_string();
  }
  format.sort_keys = a.get_bool(3, false);
  std::string text = to_json(input, format);
  if (ensure_ascii) {
    std::string escaped;
    for (char32_t c : decode(text)) {
      if (c < 0x80) {
        escaped.push_back(static_cast<char>(c));
      } else if (c < 0x10000) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
        escaped += buf;
      } else {
        const char32_t v = c - 0x10000;
        char buf[16];
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
        escaped += buf;
      }
    }
    text = std::move(escaped);
  }
  return Value::string(std::move(text));
}

// Python's str.format for the common field syntax: {}, {0}, {name}, {name.attr}, {!r}, {:spec}.
std::string format_field(const Value& v, const std::string& spec) {
  if (spec.empty()) return to_str(v);
  // [[fill]align][sign][0][width][,][.precision][type]
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  const auto spec_cps = decode(spec);
  if (spec_cps.size() >= 2 && (spec_cps[1] == '<' || spec_cps[1] == '>' || spec_cps[1] == '^')) {
    fill.clear();
    unicode::append_utf8(fill, spec_cps[0]);
    align = static_cast<char>(spec_cps[1]);
    i = fill.size() + 1;
  } else if (!spec.empty() && (spec[0] == '<' || spec[0] == '>' || spec[0] == '^')) {
    align = spec[0];
    i = 1;
  }
  std::string sign;
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec.substr(i++, 1);
  bool zero = false;
  if (i < spec.size() && spec[i] == '0') zero = true, ++i;
  int64_t width = 0;
  while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])))
    width = std::min<int64_t>(width * 10 + (spec[i++] - '0'), 4096);
  int precision = -1;
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    precision = 0;
    while (i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])))
      precision = std::min(precision * 10 + (spec[i++] - '0'), 300);
  }
  char type = i < spec.size() ? spec[i++] : 0;
  if (i != spec.size()) throw_error("Invalid format specifier");
  std::string body;
  char buf[512];
  if (type == 'f' || type == 'e' || type == 'g' || type == '%' || (type == 0 && v.is_float() && precision >= 0)) {
    if (!v.is_number()) throw_error("Unknown format code '", std::string(1, type), "' for object of type '", type_name(v), "'");
    double d = v.as_double();
    if (type == '%') d *= 100;
    const char conv = type == 0 ? 'g' : type == '%' ? 'f' : type;
    std::snprintf(buf, sizeof buf, ("%" + sign + "." + std::to_string(precision < 0 ? 6 : precision) + conv).c_str(), d);
    body = buf;
    if (type == '%') body += "%";
  } else if (type == 'd' || (type == 0 && v.is_integral())) {
    if (!v.is_integral()) throw_error("Unknown format code 'd' for object of type '", type_name(v), "'");
    body = std::to_string(v.as_int());
    if (v.as_int() >= 0 && (sign == "+" || sign == " ")) body = sign + body;
  } else {
    body = to_str(v);
    if (precision >= 0) {
      auto cps = decode(body);
      if (cps.size() > static_cast<size_t>(precision)) cps.resize(static_cast<size_t>(precision));
      body = encode(cps);
    }
  }
  if (!align) align = (v.is_number() && !v.is_bool()) ? '>' : '<';
  if (zero && v.is_number()) {
    const bool negative = !body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ');
    const std::string prefix = negative ? body.substr(0, 1) : "";
    const std::string digits = negative ? body.substr(1) : body;
    return prefix + pad(digits, width - static_cast<int64_t>(prefix.size()), "0", '>');
  }
  return pad(body, width, fill, align);
}

std::string str_format(Interpreter& interp, const std::string& format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      throw_error("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos) throw_error("Single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    std::string spec, conversion;
    if (auto colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (auto bang = field.find('!'); bang != std::string::npos) {
      conversion = field.substr(bang + 1);
      field.resize(bang);
    }
    // The first part names an argument; ".attr" and "[key]" walk into it.
    size_t end = field.find_first_of(".[");
    std::string head = field.substr(0, end);
    Value value;
    if (head.empty()) {
      if (auto_index >= args.positional.size()) throw_error("Replacement index ", auto_index, " out of range for positional args tuple");
      value = args.positional[auto_index++];
    } else if (std::all_of(head.begin(), head.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      const size_t index = static_cast<size_t>(std::strtoull(head.c_str(), nullptr, 10));
      if (index >= args.positional.size()) throw_error("Replacement index ", index, " out of range for positional args tuple");
      value = args.positional[index];
    } else {
      auto it = std::find_if(args.keyword.begin(), args.keyword.end(), [&](const auto& kw) { return kw.first == head; });
      if (it == args.keyword.end()) throw_error("KeyError: ", python_string_repr(head));
      value = it->second;
    }
    while (end != std::string::npos && end < field.size()) {
      if (field[end] == '.') {
        const size_t next = field.find_first_of(".[", end + 1);
        value = interp.get_attr(value, field.substr(end + 1, next == std::string::npos ? std::string::npos : next - end - 1));
        end = next;
      } else {
        const size_t close_bracket = field.find(']', end);
        if (close_bracket == std::string::npos) throw_error("Missing ']' in format string");
        const std::string key = field.substr(end + 1, close_bracket - end - 1);
        const bool digits = !key.empty() && std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        value = interp.get_item(value, digits ? Value::integer(std::strtoll(key.c_str(), nullptr, 10)) : Value::string(key));
        end = close_bracket + 1;
      }
    }
    if (conversion == "r") value = Value::string(to_repr(value));
    else if (conversion == "s") value = Value::string(to_str(value));
    else if (!conversion.empty()) throw_error("Unknown conversion specifier ", conversion);
    out += format_field(value, spec);
    interp.check_size(out.size());
  }
  interp.produced(out.size());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Filters

using Filter = Value (*)(Interpreter&, Value, CallArgs&);

Value select_or_reject(Interpreter& interp, const Value& input, CallArgs& args, bool by_attribute, bool select,
                       const char* name) {
  std::vector<Value> out;
  if (!truthy(input)) return Value::generator({});
  size_t offset = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) throw_error("Missing parameter for attribute name");
    attribute = args.positional[0];
    offset = 1;
  }
  std::optional<std::string> test;
  CallArgs test_args;
  if (args.positional.size() > offset) {
    test = to_str(args.positional[offset]);
    if (!is_test(*test)) throw_error("No test named '", *test, "'.");
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(offset + 1), args.positional.end());
    test_args.keyword = args.keyword;
  } else if (!args.keyword.empty()) {
    throw_error(name, "() got an unexpected keyword argument '", args.keyword[0].first, "'");
  }
  for (const auto& item : iterate(input)) {
    interp.tick();
    const Value subject = by_attribute ? get_path(interp, item, attribute, nullptr) : item;
    const bool passed = test ? call_test(interp, *test, subject, test_args) : truthy(subject);
    if (passed == select) out.push_back(item);
  }
  return Value::generator(std::move(out));
}

Value filter_abs(Interpreter&, Value v, CallArgs& args) {
  Arguments("abs", args, {});
  if (v.is_float()) return Value::number(std::fabs(v.as_double()));
  if (v.is_integral()) {
    if (v.as_int() == std::numeric_limits<int64_t>::min()) throw_error("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  throw_error("bad operand type for abs(): '", type_name(v), "'");
}

Value filter_attr(Interpreter& interp, Value v, CallArgs& args) {
  Arguments a("attr", args, {"name"});
  if (!a.has(0)) throw_error("attr() missing required argument 'name'");
  // Python attributes only: unlike `x.name`, attr() never falls back to dict items.
  const std::string name = to_str(a.get(0));
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_object())
    if (auto found = interp.object_attribute(*v.object(), name)) return *found;
  if (auto method = find_method(interp, v, name)) return *method;
  return undefined_attribute(v, name);
}

Value filter_batch(Interpreter&, Value v, CallArgs& args) {
  Arguments a("batch", args, {"linecount", "fill_with"});
  const int64_t size = a.get_int(0, 0);
  if (size <= 0) throw_error("batch(): linecount must be positive");
  std::vector<Value> batches, current;
  for (auto& item : iterate(v)) {
    current.push_back(std::move(item));
    if (static_cast<int64_t>(current.size()) == size) {
      batches.push_back(Value::list(std::move(current)));
      current.clear();
    }
  }
  if (!current.empty()) {
    if (a.has(1) && !a.get(1).is_none())
      while (static_cast<int64_t>(current.size()) < size) current.push_back(a.get(1));
    batches.push_back(Value::list(std::move(current)));
  }
  return Value::generator(std::move(batches));
}

Value filter_capitalize(Interpreter&, Value v, CallArgs& args) {
  Arguments("capitalize", args, {});
  const Value s = soft_str(v);
  return like(s, unicode::capitalize(s.as_string()));
}

Value filter_center(Interpreter&, Value v, CallArgs& args) {
  Arguments a("center", args, {"width"});
  return Value::string(pad(to_str(v), a.get_int(0, 80), " ", '^'));
}

Value filter_default(Interpreter&, Value v, CallArgs& args) {
  Arguments a("default", args, {"default_value", "boolean"});
  const bool boolean = a.get_bool(1, false);
  if (v.is_undefined() || (boolean && !truthy(v))) return a.get_or(0, Value::string(""));
  return v;
}

Value filter_dictsort(Interpreter&, Value v, CallArgs& args) {
  Arguments a("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_dict()) throw_error("'", type_name(v), "' object has no attribute 'items'");
  const bool case_sensitive = a.get_bool(0, false);
  const std::string by = a.get_string(1, "key");
  if (by != "key" && by != "value") throw_error("You can only sort by either \"key\" or \"value\"");
  const size_t pos = by == "key" ? 0 : 1;
  std::vector<Value> pairs;
  for (const auto& [key, value] : v.dict().entries()) pairs.push_back(Value::list({Value::string(key), value}, true));
  auto sort_key = [&](const Value& pair) {
    const Value& k = pair.list().items[pos];
    return case_sensitive ? k : ignore_case(k);
  };
  const bool reverse = a.get_bool(2, false);
  std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
    return reverse ? compare(sort_key(y), sort_key(x), "<") < 0 : compare(sort_key(x), sort_key(y), "<") < 0;
  });
  return Value::list(std::move(pairs));
}

Value filter_escape(Interpreter&, Value v, CallArgs& args) {
  Arguments("escape", args, {});
  return Value::markup(html_escape_value(v));
}

Value filter_forceescape(Interpreter&, Value v, CallArgs& args) {
  Arguments("forceescape", args, {});
  return Value::markup(html_escape(to_str(v)));
}

Value filter_first(Interpreter&, Value v, CallArgs& args) {
  Arguments("first", args, {});
  if (v.is_list()) {
    if (v.list().items.empty()) return Value::undefined("No first item, sequence was empty.");
    return v.list().items.front();
  }
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items.front();
}

Value filter_last(Interpreter&, Value v, CallArgs& args) {
  Arguments("last", args, {});
  if ((v.is_iterable() && v.iterable().single_use) || (!v.is_list() && !v.is_string() && !v.is_dict() &&
                                                       !v.is_iterable() && !v.is_undefined()))
    throw_error("'", type_name(v), "' object is not reversible");
  if (v.is_list()) {
    if (v.list().items.empty()) return Value::undefined("No last item, sequence was empty.");
    return v.list().items.back();
  }
  auto items = iterate(v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items.back();
}

Value filter_float(Interpreter&, Value v, CallArgs& args) {
  Arguments a("float", args, {"default"});
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string())
    if (auto d = parse_python_float(v.as_string())) return Value::number(*d);
  return a.get_or(0, Value::number(0.0));
}

Value filter_format(Interpreter& interp, Value v, CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty())
    throw_error("can't handle positional and keyword arguments at the same time");
  Value params;
  if (!args.keyword.empty()) {
    Dict d;
    for (const auto& [k, val] : args.keyword) d.set(k, val);
    params = Value::dict(std::move(d));
  } else {
    params = Value::list(args.positional, true);
  }
  return binary_op("%", soft_str(v), params, interp);
}

Value filter_indent(Interpreter&, Value v, CallArgs& args) {
  Arguments a("indent", args, {"width", "first", "blank"});
  std::string indention;
  if (a.has(0) && a.get(0).is_string()) indention = a.get(0).as_string();
  else indention = std::string(static_cast<size_t>(std::clamp<int64_t>(a.get_int(0, 4), 0, 4096)), ' ');
  const bool first = a.get_bool(1, false);
  const bool blank = a.get_bool(2, false);
  // Jinja2 appends "\n" to the value itself, which only strings survive.
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_tuple()) throw_error("can only concatenate tuple (not \"str\") to tuple");
  if (v.is_list()) throw_error("'list' object has no attribute 'splitlines'");
  if (!v.is_string()) throw_error("unsupported operand type(s) for +=: '", type_name(v), "' and 'str'");
  const Value& s = v;
  // Jinja appends a newline first so that splitlines() keeps a trailing empty line.
  const auto lines = unicode::split_lines(s.as_string() + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (blank || !lines[i].empty()) out += indention;
    }
    out += lines[i];
  }
  if (first) out = indention + out;
  return like(s, std::move(out));
}

Value filter_int(Interpreter&, Value v, CallArgs& args) {
  Arguments a("int", args, {"default", "base"});
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_integral()) return Value::integer(v.as_int());
  if (v.is_float()) {
    const double d = v.as_double();
    if (!std::isfinite(d)) return a.get_or(0, Value::integer(0));
    if (std::fabs(d) >= 9.2e18) throw_error("integer overflow");
    return Value::integer(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    if (auto i = parse_python_int(v.as_string(), static_cast<int>(a.get_int(1, 10)))) return Value::integer(*i);
    if (auto d = parse_python_float(v.as_string()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18)
      return Value::integer(static_cast<int64_t>(*d));
  }
  return a.get_or(0, Value::integer(0));
}

Value filter_items(Interpreter&, Value v, CallArgs& args) {
  Arguments("items", args, {});
  if (v.is_undefined()) return Value::generator({});
  if (!v.is_dict()) return Value::iterable("generator", {}, true, "Can only get item pairs from a mapping.");
  std::vector<Value> pairs;
  for (const auto& [key, value] : v.dict().entries()) pairs.push_back(Value::list({Value::string(key), value}, true));
  return Value::generator(std::move(pairs));
}

Value filter_join(Interpreter& interp, Value v, CallArgs& args) {
  Arguments a("join", args, {"d", "attribute"});
  const std::string separator = a.get_string(0, "");
  std::string out;
  bool first = true;
  for (auto& item : iterate(v)) {
    if (!first) out += separator;
    first = false;
    out += to_str(a.has(1) ? get_path(interp, item, a.get(1), nullptr) : item);
    interp.check_size(out.size());
  }
  interp.produced(out.size());
  return Value::string(std::move(out));
}

Value filter_length(Interpreter&, Value v, CallArgs& args) {
  Arguments("length", args, {});
  return Value::integer(length(v));
}

Value filter_list(Interpreter&, Value v, CallArgs& args) {
  Arguments("list", args, {});
  return Value::list(iterate(v));
}

Value filter_lower(Interpreter&, Value v, CallArgs& args) {
  Arguments("lower", args, {});
  const Value s = soft_str(v);
  return like(s, unicode::to_lower(s.as_string()));
}

Value filter_map(Interpreter& interp, Value v, CallArgs& args) {
  std::vector<Value> out;
  if (!truthy(v)) return Value::generator({});
  auto keyword = [&](const std::string& name) -> const Value* {
    for (const auto& kw : args.keyword)
      if (kw.first == name) return &kw.second;
    return nullptr;
  };
  if (args.positional.empty() && keyword("attribute")) {
    const Value attribute = *keyword("attribute");
    const Value* fallback = keyword("default");
    for (const auto& kw : args.keyword)
      if (kw.first != "attribute" && kw.first != "default") throw_error("Unexpected keyword argument '", kw.first, "'");
    for (const auto& item : iterate(v)) {
      interp.tick();
      out.push_back(get_path(interp, item, attribute, fallback));
    }
    return Value::generator(std::move(out));
  }
  if (args.positional.empty()) throw_error("map requires a filter argument");
  const std::string name = to_str(args.positional[0]);
  if (!is_filter(name)) throw_error("No filter named '", name, "'.");
  for (const auto& item : iterate(v)) {
    interp.tick();
    CallArgs inner;
    inner.positional.assign(args.positional.begin() + 1, args.positional.end());
    inner.keyword = args.keyword;
    out.push_back(call_filter(interp, name, item, inner));
  }
  return Value::generator(std::move(out));
}

Value min_or_max(Interpreter& interp, const Value& v, CallArgs& args, bool want_max, const char* name) {
  Arguments a(name, args, {"case_sensitive", "attribute"});
  const auto items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  const bool case_sensitive = a.get_bool(0, false);
  auto key = [&](const Value& item) {
    Value k = a.has(1) ? get_path(interp, item, a.get(1), nullptr) : item;
    return case_sensitive ? k : ignore_case(k);
  };
  size_t best = 0;
  Value best_key = key(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(items[i]);
    const int c = compare(k, best_key, want_max ? ">" : "<");
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}

Value filter_max(Interpreter& interp, Value v, CallArgs& args) { return min_or_max(interp, v, args, true, "max"); }
Value filter_min(Interpreter& interp, Value v, CallArgs& args) { return min_or_max(interp, v, args, false, "min"); }

Value filter_reject(Interpreter& interp, Value v, CallArgs& args) {
  return select_or_reject(interp, v, args, false, false, "reject");
}
Value filter_rejectattr(Interpreter& interp, Value v, CallArgs& args) {
  return select_or_reject(interp, v, args, true, false, "rejectattr");
}
Value filter_select(Interpreter& interp, Value v, CallArgs& args) {
  return select_or_reject(interp, v, args, false, true, "select");
}
Value filter_selectattr(Interpreter& interp, Value v, CallArgs& args) {
  return select_or_reject(interp, v, args, true, true, "selectattr");
}

Value filter_replace(Interpreter& interp, Value v, CallArgs& args) {
  Arguments a("replace", args, {"old", "new", "count"});
  if (!a.has(0) || !a.has(1)) throw_error("replace() missing required arguments 'old' and 'new'");
  const int64_t count = a.has(2) && !a.get(2).is_none() ? a.get_int(2, -1) : -1;
  return Value::string(py_replace(to_str(v), to_str(a.get(0)), to_str(a.get(1)), count, interp));
}

Value filter_reverse(Interpreter&, Value v, CallArgs& args) {
  Arguments("reverse", args, {});
  if (v.is_string()) {
    auto cps = decode(v.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value::string(encode(cps));
  }
  // reversed() where Python can, else a reversed list.
  if (!v.is_list() && !v.is_dict() && !v.is_iterable() && !v.is_undefined()) throw_error("argument must be iterable");
  // An undefined value reverses like an empty sequence, into a (true) iterator object.
  if (v.is_undefined()) return Value::iterable("reversed", {}, true);
  if (v.is_iterable() && !v.iterable().deferred_error.empty()) throw_error("argument must be iterable");
  const bool reversible = v.is_list() || v.is_dict() || (v.is_iterable() && !v.iterable().single_use);
  auto items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (!reversible) return Value::list(std::move(items));
  std::string type = v.is_tuple() ? "reversed" : v.is_list() ? "list_reverseiterator" : "dict_reversekeyiterator";
  if (v.is_iterable()) {
    const std::string& view = v.iterable().type_name;
    type = view == "dict_items" ? "dict_reverseitemiterator"
           : view == "dict_values" ? "dict_reversevalueiterator"
                                   : "dict_reversekeyiterator";
  }
  return Value::iterable(type, std::move(items), true);
}

Value filter_round(Interpreter&, Value v, CallArgs& args) {
  Arguments a("round", args, {"precision", "method"});
  const int64_t precision = a.get_int(0, 0);
  const std::string method = a.get_string(1, "common");
  if (method != "common" && method != "ceil" && method != "floor")
    throw_error("method must be 'common', 'ceil' or 'floor'");
  if (!v.is_number()) throw_error("type ", type_name(v), " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_integral()) {
      if (precision >= 0) return Value::integer(v.as_int());
      return Value::integer(static_cast<int64_t>(round_float(v.as_double(), precision)));
    }
    return Value::number(round_float(v.as_double(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  return Value::number((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value filter_safe(Interpreter&, Value v, CallArgs& args) {
  Arguments("safe", args, {});
  return Value::markup(to_str(v));
}

Value filter_sort(Interpreter& interp, Value v, CallArgs& args) {
  Arguments a("sort", args, {"reverse", "case_sensitive", "attribute"});
  auto items = iterate(v);
  const bool reverse = a.get_bool(0, false);
  const bool case_sensitive = a.get_bool(1, false);
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : items) {
    Value k = a.has(2) ? get_path(interp, item, a.get(2), nullptr) : item;
    keyed.emplace_back(case_sensitive ? k : ignore_case(k), std::move(item));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? compare(y.first, x.first, "<") < 0 : compare(x.first, y.first, "<") < 0;
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Value filter_string(Interpreter&, Value v, CallArgs& args) {
  Arguments("string", args, {});
  return soft_str(v);
}

Value filter_sum(Interpreter& interp, Value v, CallArgs& args) {
  Arguments a("sum", args, {"attribute", "start"});
  Value total = a.get_or(1, Value::integer(0));
  for (auto& item : iterate(v)) {
    interp.tick();
    total = binary_op("+", total, a.has(0) ? get_path(interp, item, a.get(0), nullptr) : item, interp);
  }
  return total;
}

Value filter_title(Interpreter&, Value v, CallArgs& args) {
  Arguments("title", args, {});
  const Value s = soft_str(v);
  // Jinja capitalizes each piece between runs of "-", whitespace, "(", "{", "[" and "<".
  auto is_separator = [](char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || unicode::is_space(c); };
  std::string out;
  bool word_start = true;
  bool in_separator = false;
  for (char32_t c : decode(s.as_string())) {
    const bool sep = is_separator(c);
    if (sep != in_separator) word_start = true;
    in_separator = sep;
    if (word_start) unicode::append_upper(out, c);
    else unicode::append_lower(out, c);
    word_start = false;
  }
  return like(s, std::move(out));
}

Value filter_tojson(Interpreter&, Value v, CallArgs& args) {
  return json_dumps(v, Arguments("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"}));
}

Value filter_trim(Interpreter&, Value v, CallArgs& args) {
  Arguments a("trim", args, {"chars"});
  const Value s = soft_str(v);
  if (a.has(0) && !a.get(0).is_none())
    return like(s, unicode::strip_chars(s.as_string(), to_str(a.get(0)), true, true));
  return like(s, std::string(unicode::strip(s.as_string())));
}

Value filter_unique(Interpreter& interp, Value v, CallArgs& args) {
  Arguments a("unique", args, {"case_sensitive", "attribute"});
  const bool case_sensitive = a.get_bool(0, false);
  std::vector<Value> out;
  std::unordered_set<std::string> seen_strings;
  std::vector<Value> seen_others;
  for (auto& item : iterate(v)) {
    interp.tick();
    Value key = a.has(1) ? get_path(interp, item, a.get(1), nullptr) : item;
    if (!case_sensitive) key = ignore_case(key);
    if (key.is_list() && !key.is_tuple()) throw_error("unhashable type: 'list'");
    if (key.is_dict()) throw_error("unhashable type: 'dict'");
    bool fresh;
    if (key.is_string()) {
      fresh = seen_strings.insert(key.as_string()).second;
    } else {
      fresh = std::none_of(seen_others.begin(), seen_others.end(), [&](const Value& s) { return equals(s, key); });
      if (fresh) seen_others.push_back(key);
    }
    if (fresh) out.push_back(std::move(item));
  }
  return Value::generator(std::move(out));
}

Value filter_upper(Interpreter&, Value v, CallArgs& args) {
  Arguments("upper", args, {});
  const Value s = soft_str(v);
  return like(s, unicode::to_upper(s.as_string()));
}

Value filter_wordcount(Interpreter&, Value v, CallArgs& args) {
  Arguments("wordcount", args, {});
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : decode(to_str(v))) {
    const bool word_char = unicode::is_alpha(c) || unicode::is_digit(c) || c == '_';
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::integer(words);
}

// Jinja2 implements these filters as generators, which report errors only once iterated:
// `{% if 5|select %}` is true, and `{{ (5|select)|list }}` fails.
template <Filter F>
Value lazily(Interpreter& interp, Value v, CallArgs& args) {
  try {
    return F(interp, std::move(v), args);
  } catch (const Exception& e) {
    return Value::iterable("generator", {}, true, e.what());
  }
}

const std::unordered_map<std::string_view, Filter>& filters() {
  static const std::unordered_map<std::string_view, Filter> table = {
      {"abs", filter_abs},
      {"attr", filter_attr},
      {"batch", lazily<filter_batch>},
      {"capitalize", filter_capitalize},
      {"center", filter_center},
      {"count", filter_length},
      {"d", filter_default},
      {"default", filter_default},
      {"dictsort", filter_dictsort},
      {"e", filter_escape},
      {"escape", filter_escape},
      {"first", filter_first},
      {"float", filter_float},
      {"forceescape", filter_forceescape},
      {"format", filter_format},
      {"indent", filter_indent},
      {"int", filter_int},
      {"items", filter_items},
      {"join", filter_join},
      {"last", filter_last},
      {"length", filter_length},
      {"list", filter_list},
      {"lower", filter_lower},
      {"map", lazily<filter_map>},
      {"max", filter_max},
      {"min", filter_min},
      {"reject", lazily<filter_reject>},
      {"rejectattr", lazily<filter_rejectattr>},
      {"replace", filter_replace},
      {"reverse", filter_reverse},
      {"round", filter_round},
      {"safe", filter_safe},
      {"select", lazily<filter_select>},
      {"selectattr", lazily<filter_selectattr>},
      {"sort", filter_sort},
      {"string", filter_string},
      {"sum", filter_sum},
      {"title", filter_title},
      {"tojson", filter_tojson},
      {"trim", filter_trim},
      {"unique", lazily<filter_unique>},
      {"upper", filter_upper},
      {"wordcount", filter_wordcount},
  };
  return table;
}

// ---------------------------------------------------------------------------------------------
// Tests

using Test = bool (*)(Interpreter&, const Value&, const Arguments&);

const Value& operand(const Arguments& a, const char* test) {
  if (!a.has(0)) throw_error(test, "() missing required argument");
  return a.get(0);
}

// Each test with the name of its one optional parameter (nullptr when it takes none).
const std::unordered_map<std::string_view, std::pair<Test, const char*>>& tests() {
  using Entry = std::pair<Test, const char*>;
  static const std::unordered_map<std::string_view, Entry> table = {
      {"defined", Entry{[](Interpreter&, const Value& v, const Arguments&) { return !v.is_undefined(); }, nullptr}},
      {"undefined", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_undefined(); }, nullptr}},
      {"none", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_none(); }, nullptr}},
      {"boolean", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_bool(); }, nullptr}},
      {"true", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_bool() && v.as_bool(); }, nullptr}},
      {"false", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_bool() && !v.as_bool(); }, nullptr}},
      {"integer", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_int(); }, nullptr}},
      {"float", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_float(); }, nullptr}},
      {"number", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_number(); }, nullptr}},
      {"string", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_string(); }, nullptr}},
      {"mapping", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_dict(); }, nullptr}},
      {"iterable", Entry{[](Interpreter&, const Value& v, const Arguments&) {
                           return v.is_string() || v.is_list() || v.is_dict() || v.is_iterable() || v.is_undefined();
                         }, nullptr}},
      {"sequence", Entry{[](Interpreter&, const Value& v, const Arguments&) {
                           return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
                         }, nullptr}},
      {"callable", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_function() || v.is_undefined(); }, nullptr}},
      {"escaped", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_markup(); }, nullptr}},
      {"odd", Entry{[](Interpreter& i, const Value& v, const Arguments&) {
                      return equals(binary_op("%", v, Value::integer(2), i), Value::integer(1));
                    }, nullptr}},
      {"even", Entry{[](Interpreter& i, const Value& v, const Arguments&) {
                       return equals(binary_op("%", v, Value::integer(2), i), Value::integer(0));
                     }, nullptr}},
      {"divisibleby", Entry{[](Interpreter& i, const Value& v, const Arguments& a) {
                              return equals(binary_op("%", v, operand(a, "divisibleby"), i), Value::integer(0));
                            }, "num"}},
      {"sameas", Entry{[](Interpreter&, const Value& v, const Arguments& a) {
                         // Python's `is`: None and bools are singletons; containers compare by identity.
                         const Value& other = operand(a, "sameas");
                         if (v.is_none() || other.is_none()) return v.is_none() && other.is_none();
                         if (v.is_bool() || other.is_bool()) return v.is_bool() && other.is_bool() && v.as_bool() == other.as_bool();
                         // CPython caches the small ints, so they are identical when equal.
                         if (v.is_int() && other.is_int()) return v.as_int() == other.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
                         if (v.is_list() && other.is_list()) return &v.list() == &other.list();
                         if (v.is_dict() && other.is_dict()) return &v.dict() == &other.dict();
                         if (v.is_function() && other.is_function()) return &v.function() == &other.function();
                         if (v.is_object() && other.is_object()) return v.object() == other.object();
                         return false;
                       }, "other"}},
      {"in", Entry{[](Interpreter&, const Value& v, const Arguments& a) { return contains(operand(a, "in"), v); }, "seq"}},
      {"lower", Entry{[](Interpreter&, const Value& v, const Arguments&) {
                        bool cased = false;
                        for (char32_t c : decode(to_str(v))) {
                          if (unicode::is_upper(c)) return false;
                          cased = cased || unicode::is_lower(c);
                        }
                        return cased;
                      }, nullptr}},
      {"upper", Entry{[](Interpreter&, const Value& v, const Arguments&) {
                        bool cased = false;
                        for (char32_t c : decode(to_str(v))) {
                          if (unicode::is_lower(c)) return false;
                          cased = cased || unicode::is_upper(c);
                        }
                        return cased;
                      }, nullptr}},
      {"filter", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_string() && is_filter(v.as_string()); }, nullptr}},
      {"test", Entry{[](Interpreter&, const Value& v, const Arguments&) { return v.is_string() && is_test(v.as_string()); }, nullptr}},
  };
  return table;
}

bool compare_test(const std::string& name, const Value& v, const Value& other) {
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, other);
  if (name == "ne" || name == "!=") return !equals(v, other);
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, other, "<") < 0;
  if (name == "le" || name == "<=") return compare(v, other, "<=") <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, other, ">") > 0;
  return compare(v, other, ">=") >= 0;
}

bool is_compare_test(std::string_view name) {
  static const std::unordered_set<std::string_view> names = {"eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<",
                                                             "le", "<=", "gt", "greaterthan", ">", "ge", ">="};
  return names.count(name) != 0;
}

// ---------------------------------------------------------------------------------------------
// Methods

using Method = Value (*)(Interpreter&, const Value& self, CallArgs&);

Value bind(Interpreter& interp, const Value& self, const std::string& name, Method method) {
  return Value::function(name, [&interp, self, method](CallArgs& args) { return method(interp, self, args); });
}

Value unsafe_method(const Value& self, const std::string& name) {
  return Value::undefined("access to attribute '" + name + "' of '" + type_name(self) + "' object is unsafe.");
}

Value strip_method(const Value& self, CallArgs& args, bool left, bool right, const char* name) {
  Arguments a(name, args, {"chars"});
  const std::string& s = self.as_string();
  if (a.has(0) && !a.get(0).is_none()) {
    if (!a.get(0).is_string()) throw_error(name, " arg must be None or str");
    return like(self, unicode::strip_chars(s, a.get(0).as_string(), left, right));
  }
  std::string_view v = s;
  if (left) v = unicode::lstrip(v);
  if (right) v = unicode::rstrip(v);
  return like(self, std::string(v));
}

bool affix_matches(const Value& self, CallArgs& args, bool suffix) {
  Arguments a(suffix ? "endswith" : "startswith", args, {"prefix", "start", "end"});
  if (!a.has(0)) throw_error(suffix ? "endswith" : "startswith", "() takes at least 1 argument (0 given)");
  std::string s = self.as_string();
  if (a.has(1) || a.has(2)) {
    const auto cps = decode(s);
    const auto len = static_cast<int64_t>(cps.size());
    auto clamp_index = [&](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + len : i, 0, len); };
    const int64_t start = clamp_index(a.get_int(1, 0));
    const int64_t end = clamp_index(a.get_int(2, len));
    if (start > end) return false;
    s = encode(std::vector<char32_t>(cps.begin() + start, cps.begin() + end));
  }
  std::vector<Value> candidates;
  if (a.get(0).is_tuple()) candidates = a.get(0).list().items;
  else candidates.push_back(a.get(0));
  for (const auto& c : candidates) {
    if (!c.is_string())
      throw_error(suffix ? "endswith" : "startswith", " first arg must be str or a tuple of str, not ", type_name(c));
    const std::string& affix = c.as_string();
    if (affix.size() > s.size()) continue;
    if (suffix ? s.compare(s.size() - affix.size(), affix.size(), affix) == 0 : s.compare(0, affix.size(), affix) == 0)
      return true;
  }
  return false;
}

int64_t find_in(const Value& self, CallArgs& args, bool from_right, const char* name) {
  Arguments a(name, args, {"sub", "start", "end"});
  if (!a.has(0)) throw_error(name, "() takes at least 1 argument (0 given)");
  const std::string& s = self.as_string();
  const std::string& sub = require_string(a.get(0));
  size_t lo = 0, hi = s.size();
  if (a.has(1) || a.has(2)) {
    const auto cps = decode(s);
    const auto len = static_cast<int64_t>(cps.size());
    auto clamp_index = [&](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + len : i, 0, len); };
    const int64_t start = clamp_index(a.get_int(1, 0));
    const int64_t end = clamp_index(a.get_int(2, len));
    if (start > end) return -1;
    lo = encode(std::vector<char32_t>(cps.begin(), cps.begin() + start)).size();
    hi = encode(std::vector<char32_t>(cps.begin(), cps.begin() + end)).size();
  }
  const std::string_view window = std::string_view(s).substr(lo, hi - lo);
  const size_t hit = from_right ? window.rfind(sub) : window.find(sub);
  if (hit == std::string_view::npos) return -1;
  return cp_index(s, lo + hit);
}

std::optional<Value> string_method(Interpreter& interp, const Value& self, const std::string& name) {
  static const std::unordered_map<std::string_view, Method> methods = {
      {"strip", [](Interpreter&, const Value& s, CallArgs& a) { return strip_method(s, a, true, true, "strip"); }},
      {"lstrip", [](Interpreter&, const Value& s, CallArgs& a) { return strip_method(s, a, true, false, "lstrip"); }},
      {"rstrip", [](Interpreter&, const Value& s, CallArgs& a) { return strip_method(s, a, false, true, "rstrip"); }},
      {"split", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("split", args, {"sep", "maxsplit"});
         return string_list(py_split(s.as_string(), a.get_or(0, Value::none()), a.get_int(1, -1), false));
       }},
      {"rsplit", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("rsplit", args, {"sep", "maxsplit"});
         return string_list(py_split(s.as_string(), a.get_or(0, Value::none()), a.get_int(1, -1), true));
       }},
      {"splitlines", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("splitlines", args, {"keepends"});
         if (a.get_bool(0, false)) throw_error("splitlines(keepends=True) is not supported");
         return string_list(unicode::split_lines(s.as_string()));
       }},
      {"startswith", [](Interpreter&, const Value& s, CallArgs& a) { return Value::boolean(affix_matches(s, a, false)); }},
      {"endswith", [](Interpreter&, const Value& s, CallArgs& a) { return Value::boolean(affix_matches(s, a, true)); }},
      {"upper", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("upper", a, {});
         return like(s, unicode::to_upper(s.as_string()));
       }},
      {"lower", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("lower", a, {});
         return like(s, unicode::to_lower(s.as_string()));
       }},
      {"casefold", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("casefold", a, {});
         return like(s, unicode::to_lower(s.as_string()));
       }},
      {"title", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("title", a, {});
         return like(s, unicode::to_title(s.as_string()));
       }},
      {"capitalize", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("capitalize", a, {});
         return like(s, unicode::capitalize(s.as_string()));
       }},
      {"swapcase", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("swapcase", a, {});
         std::string out;
         for (char32_t c : decode(s.as_string())) {
           if (unicode::is_upper(c)) unicode::append_lower(out, c);
           else if (unicode::is_lower(c)) unicode::append_upper(out, c);
           else unicode::append_utf8(out, c);
         }
         return like(s, std::move(out));
       }},
      {"replace", [](Interpreter& interp, const Value& s, CallArgs& args) {
         Arguments a("replace", args, {"old", "new", "count"});
         if (!a.has(0) || !a.has(1)) throw_error("replace() takes at least 2 arguments");
         return like(s, py_replace(s.as_string(), require_string(a.get(0), "replace() argument 1 "),
                                   require_string(a.get(1), "replace() argument 2 "), a.get_int(2, -1), interp));
       }},
      {"find", [](Interpreter&, const Value& s, CallArgs& a) { return Value::integer(find_in(s, a, false, "find")); }},
      {"rfind", [](Interpreter&, const Value& s, CallArgs& a) { return Value::integer(find_in(s, a, true, "rfind")); }},
      {"index", [](Interpreter&, const Value& s, CallArgs& a) {
         const int64_t i = find_in(s, a, false, "index");
         if (i < 0) throw_error("substring not found");
         return Value::integer(i);
       }},
      {"rindex", [](Interpreter&, const Value& s, CallArgs& a) {
         const int64_t i = find_in(s, a, true, "rindex");
         if (i < 0) throw_error("substring not found");
         return Value::integer(i);
       }},
      {"count", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("count", args, {"sub"});
         if (!a.has(0)) throw_error("count() takes at least 1 argument (0 given)");
         const std::string& sub = require_string(a.get(0));
         if (sub.empty()) return Value::integer(static_cast<int64_t>(unicode::length(s.as_string())) + 1);
         int64_t n = 0;
         for (size_t pos = s.as_string().find(sub); pos != std::string::npos; pos = s.as_string().find(sub, pos + sub.size())) ++n;
         return Value::integer(n);
       }},
      {"join", [](Interpreter& interp, const Value& s, CallArgs& args) {
         Arguments a("join", args, {"iterable"});
         if (!a.has(0)) throw_error("join() takes exactly one argument (0 given)");
         std::string out;
         size_t i = 0;
         for (const auto& item : iterate(a.get(0))) {
           if (!item.is_string())
             throw_error("sequence item ", i, ": expected str instance, ", type_name(item), " found");
           if (i++) out += s.as_string();
           out += s.is_markup() && !item.is_markup() ? html_escape(item.as_string()) : item.as_string();
           interp.check_size(out.size());
         }
         interp.produced(out.size());
         return like(s, std::move(out));
       }},
      {"format", [](Interpreter& interp, const Value& s, CallArgs& args) {
         if (!s.is_markup()) return Value::string(str_format(interp, s.as_string(), args));
         // Markup.format escapes its arguments.
         CallArgs escaped = args;
         for (auto& v : escaped.positional)
           if (v.is_string() && !v.is_markup()) v = Value::markup(html_escape(v.as_string()));
         for (auto& kw : escaped.keyword)
           if (kw.second.is_string() && !kw.second.is_markup()) kw.second = Value::markup(html_escape(kw.second.as_string()));
         return Value::markup(str_format(interp, s.as_string(), escaped));
       }},
      {"isdigit", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("isdigit", a, {});
         const auto cps = decode(s.as_string());
         return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), unicode::is_digit));
       }},
      {"isnumeric", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("isnumeric", a, {});
         const auto cps = decode(s.as_string());
         return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), unicode::is_digit));
       }},
      {"isdecimal", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("isdecimal", a, {});
         const auto cps = decode(s.as_string());
         return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), unicode::is_digit));
       }},
      {"isalpha", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("isalpha", a, {});
         const auto cps = decode(s.as_string());
         return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), unicode::is_alpha));
       }},
      {"isalnum", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("isalnum", a, {});
         const auto cps = decode(s.as_string());
         return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), [](char32_t c) {
                                 return unicode::is_alpha(c) || unicode::is_digit(c);
                               }));
       }},
      {"isspace", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("isspace", a, {});
         const auto cps = decode(s.as_string());
         return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), unicode::is_space));
       }},
      {"islower", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("islower", a, {});
         bool cased = false;
         for (char32_t c : decode(s.as_string())) {
           if (unicode::is_upper(c)) return Value::boolean(false);
           cased = cased || unicode::is_lower(c);
         }
         return Value::boolean(cased);
       }},
      {"isupper", [](Interpreter&, const Value& s, CallArgs& a) {
         Arguments("isupper", a, {});
         bool cased = false;
         for (char32_t c : decode(s.as_string())) {
           if (unicode::is_lower(c)) return Value::boolean(false);
           cased = cased || unicode::is_upper(c);
         }
         return Value::boolean(cased);
       }},
      {"center", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("center", args, {"width", "fillchar"});
         return like(s, pad(s.as_string(), a.get_int(0, 0), a.get_string(1, " "), '^'));
       }},
      {"ljust", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("ljust", args, {"width", "fillchar"});
         return like(s, pad(s.as_string(), a.get_int(0, 0), a.get_string(1, " "), '<'));
       }},
      {"rjust", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("rjust", args, {"width", "fillchar"});
         return like(s, pad(s.as_string(), a.get_int(0, 0), a.get_string(1, " "), '>'));
       }},
      {"zfill", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("zfill", args, {"width"});
         const std::string& str = s.as_string();
         const bool sign = !str.empty() && (str[0] == '-' || str[0] == '+');
         const std::string body = sign ? str.substr(1) : str;
         return like(s, (sign ? str.substr(0, 1) : "") + pad(body, a.get_int(0, 0) - (sign ? 1 : 0), "0", '>'));
       }},
      {"partition", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("partition", args, {"sep"});
         const std::string sep = require_string(a.get_or(0, Value::none()));
         if (sep.empty()) throw_error("empty separator");
         const std::string& str = s.as_string();
         const size_t hit = str.find(sep);
         if (hit == std::string::npos) return Value::list({s, Value::string(""), Value::string("")}, true);
         return Value::list({Value::string(str.substr(0, hit)), Value::string(sep), Value::string(str.substr(hit + sep.size()))}, true);
       }},
      {"rpartition", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("rpartition", args, {"sep"});
         const std::string sep = require_string(a.get_or(0, Value::none()));
         if (sep.empty()) throw_error("empty separator");
         const std::string& str = s.as_string();
         const size_t hit = str.rfind(sep);
         if (hit == std::string::npos) return Value::list({Value::string(""), Value::string(""), s}, true);
         return Value::list({Value::string(str.substr(0, hit)), Value::string(sep), Value::string(str.substr(hit + sep.size()))}, true);
       }},
      {"removeprefix", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("removeprefix", args, {"prefix"});
         const std::string prefix = require_string(a.get_or(0, Value::none()), "removeprefix() argument ");
         const std::string& str = s.as_string();
         return like(s, str.compare(0, prefix.size(), prefix) == 0 ? str.substr(prefix.size()) : str);
       }},
      {"removesuffix", [](Interpreter&, const Value& s, CallArgs& args) {
         Arguments a("removesuffix", args, {"suffix"});
         const std::string suffix = require_string(a.get_or(0, Value::none()), "removesuffix() argument ");
         const std::string& str = s.as_string();
         const bool hit = !suffix.empty() && str.size() >= suffix.size() &&
                          str.compare(str.size() - suffix.size(), suffix.size(), suffix) == 0;
         return like(s, hit ? str.substr(0, str.size() - suffix.size()) : str);
       }},
  };
  auto it = methods.find(name);
  if (it == methods.end()) return std::nullopt;
  return bind(interp, self, name, it->second);
}

std::optional<Value> dict_method(Interpreter& interp, const Value& self, const std::string& name) {
  static const std::unordered_map<std::string_view, Method> methods = {
      {"items", [](Interpreter&, const Value& d, CallArgs& a) {
         Arguments("items", a, {});
         std::vector<Value> pairs;
         for (const auto& [key, value] : d.dict().entries()) pairs.push_back(Value::list({Value::string(key), value}, true));
         return Value::iterable("dict_items", std::move(pairs), false);
       }},
      {"keys", [](Interpreter&, const Value& d, CallArgs& a) {
         Arguments("keys", a, {});
         return Value::iterable("dict_keys", iterate(d), false);
       }},
      {"values", [](Interpreter&, const Value& d, CallArgs& a) {
         Arguments("values", a, {});
         std::vector<Value> values;
         for (const auto& entry : d.dict().entries()) values.push_back(entry.second);
         return Value::iterable("dict_values", std::move(values), false);
       }},
      {"get", [](Interpreter&, const Value& d, CallArgs& args) {
         Arguments a("get", args, {"key", "default"});
         if (!a.has(0)) throw_error("get expected at least 1 argument, got 0");
         if (a.get(0).is_string())
           if (const Value* v = d.dict().find(a.get(0).as_string())) return *v;
         return a.get_or(1, Value::none());
       }},
      {"copy", [](Interpreter&, const Value& d, CallArgs& a) {
         Arguments("copy", a, {});
         return Value::dict(d.dict());
       }},
  };
  static const std::unordered_set<std::string_view> mutating = {"pop", "popitem", "setdefault", "update", "clear"};
  if (mutating.count(name)) return unsafe_method(self, name);
  auto it = methods.find(name);
  if (it == methods.end()) return std::nullopt;
  return bind(interp, self, name, it->second);
}

std::optional<Value> list_method(Interpreter& interp, const Value& self, const std::string& name) {
  static const std::unordered_map<std::string_view, Method> methods = {
      {"index", [](Interpreter&, const Value& l, CallArgs& args) {
         Arguments a("index", args, {"value"});
         if (!a.has(0)) throw_error("index expected at least 1 argument, got 0");
         const auto& items = l.list().items;
         for (size_t i = 0; i < items.size(); ++i)
           if (equals(items[i], a.get(0))) return Value::integer(static_cast<int64_t>(i));
         throw_error(to_repr(a.get(0)), " is not in list");
       }},
      {"count", [](Interpreter&, const Value& l, CallArgs& args) {
         Arguments a("count", args, {"value"});
         if (!a.has(0)) throw_error("count() takes exactly one argument (0 given)");
         int64_t n = 0;
         for (const auto& item : l.list().items) n += equals(item, a.get(0)) ? 1 : 0;
         return Value::integer(n);
       }},
      {"copy", [](Interpreter&, const Value& l, CallArgs& a) {
         Arguments("copy", a, {});
         return Value::list(l.list().items);
       }},
  };
  static const std::unordered_set<std::string_view> mutating = {"append", "extend", "insert", "pop",
                                                                "remove", "reverse", "sort", "clear"};
  if (!self.is_tuple() && mutating.count(name)) return unsafe_method(self, name);
  if (self.is_tuple() && name == "copy") return std::nullopt;
  auto it = methods.find(name);
  if (it == methods.end()) return std::nullopt;
  return bind(interp, self, name, it->second);
}

// ---------------------------------------------------------------------------------------------
// Globals

Value global_range(CallArgs& args) {
  if (!args.keyword.empty()) throw_error("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) throw_error("range expected at least 1 argument, got ", p.size());
  for (const auto& v : p)
    if (!v.is_integral()) throw_error("'", type_name(v), "' object cannot be interpreted as an integer");
  int64_t start = 0, stop, step = 1;
  if (p.size() == 1) {
    stop = p[0].as_int();
  } else {
    start = p[0].as_int();
    stop = p[1].as_int();
    if (p.size() == 3) step = p[2].as_int();
  }
  if (step == 0) throw_error("range() arg 3 must not be zero");
  // The sandbox's MAX_RANGE.
  constexpr int64_t kMaxRange = 100000;
  const long double span = step > 0 ? (static_cast<long double>(stop) - start) : (static_cast<long double>(start) - stop);
  const long double count = span <= 0 ? 0 : std::ceil(span / std::fabs(static_cast<long double>(step)));
  if (count > kMaxRange)
    throw_error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ").");
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  int64_t v = start;
  for (int64_t i = 0; i < static_cast<int64_t>(count); ++i, v += step) items.push_back(Value::integer(v));
  return Value::list(std::move(items));
}

void merge_mapping_args(const CallArgs& args, Dict& into, const char* function) {
  if (args.positional.size() > 1) throw_error(function, " expected at most 1 argument, got ", args.positional.size());
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (source.is_undefined()) fail_undefined(source);
    if (source.is_dict()) {
      for (const auto& [k, v] : source.dict().entries()) into.set(k, v);
    } else {
      for (const auto& pair : iterate(source)) {
        const auto kv = iterate(pair);
        if (kv.size() != 2) throw_error(function, ": sequence elements must have length 2");
        if (!kv[0].is_string()) throw_error(function, ": only string keys are supported");
        into.set(kv[0].as_string(), kv[1]);
      }
    }
  }
  for (const auto& [k, v] : args.keyword) into.set(k, v);
}

std::string format_time(const Options& options, const std::string& format) {
  std::tm tm{};
  if (options.now) {
    tm = options.now();
  } else {
    const std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  if (format.empty()) return "";
  for (size_t size = 256; size <= (1u << 20); size *= 4) {
    std::string buf(size, '\0');
    const size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
    if (n > 0) {
      buf.resize(n);
      return buf;
    }
  }
  return "";
}

}  // namespace

bool is_filter(std::string_view name) { return filters().count(name) != 0; }

bool is_test(std::string_view name) { return tests().count(name) != 0 || is_compare_test(name); }

Value call_filter(Interpreter& interp, const std::string& name, Value input, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) throw_error("No filter named '", name, "' found.");
  return it->second(interp, std::move(input), args);
}

bool call_test(Interpreter& interp, const std::string& name, const Value& input, CallArgs& args) {
  if (is_compare_test(name)) {
    Arguments a(name, args, {"other"});
    return compare_test(name, input, operand(a, name.c_str()));
  }
  auto it = tests().find(name);
  if (it == tests().end()) throw_error("No test named '", name, "' found.");
  const char* param = it->second.second;
  const Arguments a = param ? Arguments(name, args, {param}) : Arguments(name, args, {});
  return it->second.first(interp, input, a);
}

std::optional<Value> find_method(Interpreter& interp, const Value& object, const std::string& name) {
  if (object.is_string()) return string_method(interp, object, name);
  if (object.is_dict()) return dict_method(interp, object, name);
  if (object.is_list()) return list_method(interp, object, name);
  return std::nullopt;
}

void install_globals(Interpreter& interp, Scope& scope) {
  scope.set("range", Value::function("range", global_range));
  scope.set("dict", Value::function("dict", [](CallArgs& args) {
    Dict d;
    merge_mapping_args(args, d, "dict");
    return Value::dict(std::move(d));
  }));
  scope.set("namespace", Value::function("namespace", [&interp](CallArgs& args) {
    auto ns = interp.new_namespace();
    merge_mapping_args(args, ns->attributes, "namespace");
    return Value::object(ns);
  }));
  scope.set("raise_exception", Value::function("raise_exception", [](CallArgs& args) -> Value {
    Arguments a("raise_exception", args, {"message"});
    throw Exception(a.has(0) ? to_str(a.get(0)) : std::string());
  }));
  scope.set("strftime_now", Value::function("strftime_now", [&interp](CallArgs& args) {
    Arguments a("strftime_now", args, {"format"});
    if (!a.has(0)) throw_error("strftime_now() missing required argument 'format'");
    return Value::string(format_time(interp.options(), require_string(a.get(0), "strftime() argument 1 ")));
  }));
  scope.set("joiner", Value::function("joiner", [](CallArgs& args) {
    Arguments a("joiner", args, {"sep"});
    auto used = std::make_shared<bool>(false);
    const std::string sep = a.get_string(0, ", ");
    return Value::function("joiner", [used, sep](CallArgs&) {
      if (!*used) {
        *used = true;
        return Value::string("");
      }
      return Value::string(sep);
    });
  }));
}

}  // namespace endless::jinja
