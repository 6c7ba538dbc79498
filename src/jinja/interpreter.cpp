#include "jinja/interpreter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "jinja/builtins.h"
#include "jinja/unicode.h"

namespace endless::jinja {
namespace {

// Limits that keep hostile templates from hanging or exhausting memory or stack.
constexpr int64_t kMaxSteps = 2'000'000;           // loop iterations, calls and KiB copied per render
constexpr size_t kMaxStringBytes = 64u << 20;      // any string, the output included
constexpr int kMaxRuntimeDepth = 600;              // nested evaluation (expressions, blocks, macros)

bool add_overflows(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_overflows(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul_overflows(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

[[noreturn]] void integer_overflow() { throw_error("integer overflow"); }

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  throw_error("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b), "'");
}

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) throw_error("integer division or modulo by zero");
  if (a == std::numeric_limits<int64_t>::min() && b == -1) integer_overflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  if (b == 0) throw_error("integer modulo by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

std::string repeat(const std::string& s, int64_t times, Interpreter& interp) {
  if (times <= 0 || s.empty()) return "";
  if (static_cast<uint64_t>(times) > kMaxStringBytes / s.size()) interp.check_size(kMaxStringBytes + 1);
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(times));
  for (int64_t i = 0; i < times; ++i) out += s;
  interp.produced(out.size());
  return out;
}

// Python's printf-style `str % args` for the conversions templates use.
// With `escape_args` (a Markup format string) arguments are HTML-escaped, as Markup.__mod__ does.
std::string percent_format(const std::string& format, const Value& args, bool escape_args) {
  std::vector<Value> values;
  const Dict* mapping = nullptr;
  if (args.is_tuple()) values = args.list().items;
  else values.push_back(args);
  if (args.is_dict()) mapping = &args.dict();
  // Python skips the "not all arguments converted" check for arguments with __getitem__.
  const bool subscriptable = args.is_dict() || (args.is_list() && !args.is_tuple()) || args.is_undefined();
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) throw_error("incomplete format");
    const Value* value = nullptr;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      if (args.is_undefined()) fail_undefined(args);
      if (close == std::string::npos || !mapping) throw_error("format requires a mapping");
      value = mapping->find(format.substr(i + 1, close - i - 1));
      if (!value) throw_error("KeyError: ", python_string_repr(format.substr(i + 1, close - i - 1)));
      i = close + 1;
    }
    std::string spec;
    while (i < format.size() && spec.size() < 8 &&
           std::string_view("-+ #0123456789.").find(format[i]) != std::string_view::npos)
      spec.push_back(format[i++]);
    if (i >= format.size()) throw_error("incomplete format");
    const char conv = format[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (!value) {
      if (next >= values.size()) throw_error("not enough arguments for format string");
      value = &values[next++];
    }
    std::string piece;
    char buf[512];
    if (conv == 's' || conv == 'r') {
      piece = conv == 's' ? to_str(*value) : to_repr(*value);
      if (escape_args && !(conv == 's' && value->is_markup())) piece = html_escape(piece);
      const bool left = spec.find('-') != std::string::npos;
      size_t width = 0;
      for (char c : spec.substr(0, spec.find('.')))
        if (c >= '0' && c <= '9') width = std::min<size_t>(width * 10 + static_cast<size_t>(c - '0'), 4096);
      const size_t len = unicode::length(piece);
      if (width > len) piece = left ? piece + std::string(width - len, ' ') : std::string(width - len, ' ') + piece;
    } else if (conv == 'd' || conv == 'i') {
      if (!value->is_number()) throw_error("%", std::string(1, conv), " format: a real number is required, not ", type_name(*value));
      if (value->is_float() && !(std::fabs(value->as_double()) < 9.2e18)) throw_error("integer overflow");
      const auto i = value->is_float() ? static_cast<long long>(value->as_double()) : static_cast<long long>(value->as_int());
      std::snprintf(buf, sizeof buf, ("%" + spec + "lld").c_str(), i);
      piece = buf;
    } else if (conv == 'f' || conv == 'F' || conv == 'e' || conv == 'E' || conv == 'g' || conv == 'G') {
      if (!value->is_number()) throw_error("must be real number, not ", type_name(*value));
      std::snprintf(buf, sizeof buf, ("%" + spec + conv).c_str(), value->as_double());
      piece = buf;
    } else {
      throw_error("unsupported format character '", std::string(1, conv), "'");
    }
    out += piece;
  }
  if (!subscriptable && next < values.size()) throw_error("not all arguments converted during string formatting");
  return out;
}

}  // namespace

const Value* Scope::lookup(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent_.get()) {
    auto it = s->vars_.find(name);
    if (it != s->vars_.end()) return &it->second;
  }
  return nullptr;
}

class DepthGuard {
 public:
  explicit DepthGuard(Interpreter& interp) : interp_(interp) {
    if (++interp_.depth_ > kMaxRuntimeDepth) {
      --interp_.depth_;
      throw_error("maximum recursion depth exceeded");
    }
  }
  ~DepthGuard() { --interp_.depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  Interpreter& interp_;
};

Interpreter::~Interpreter() {
  // Macros hold their defining scope, which holds them; namespaces may hold themselves.
  for (auto& scope : captured_scopes_) scope->clear();
  for (auto& weak : namespaces_)
    if (auto ns = weak.lock()) ns->attributes = Dict();
}

void Interpreter::tick() {
  if (++steps_ > kMaxSteps)
    throw_error("template exceeded the limit of ", kMaxSteps, " loop iterations and calls");
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > kMaxStringBytes) throw_error("template output exceeds ", kMaxStringBytes >> 20, " MiB");
}

void Interpreter::produced(size_t bytes) {
  check_size(bytes);
  steps_ += static_cast<int64_t>(bytes >> 10);
  tick();
}

std::shared_ptr<Object> Interpreter::new_namespace() {
  auto ns = std::make_shared<Object>();
  ns->type_name = "jinja2.utils.Namespace";
  ns->is_namespace = true;
  namespaces_.push_back(ns);
  return ns;
}

void Interpreter::emit(std::string& out, std::string_view text) const {
  check_size(out.size() + text.size());
  out += text;
}

std::string Interpreter::render(const Body& body, const nlohmann::ordered_json& context) {
  auto globals = std::make_shared<Scope>(nullptr);
  install_globals(*this, *globals);
  auto root = std::make_shared<Scope>(globals);
  if (!context.is_null() && !context.is_object()) throw_error("the template context must be a JSON object");
  if (context.is_object())
    for (const auto& [key, value] : context.items()) root->set(key, from_json(value));
  std::string out;
  exec(body, root, out);
  return out;
}

Interpreter::Flow Interpreter::exec(const Body& body, const ScopePtr& scope, std::string& out) {
  for (const auto& stmt : body) {
    const Flow flow = exec_stmt(*stmt, scope, out);
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_stmt(const Stmt& s, const ScopePtr& scope, std::string& out) {
  DepthGuard guard(*this);
  switch (s.kind) {
    case StmtKind::Text:
      emit(out, s.text);
      return Flow::Normal;
    case StmtKind::Output: {
      const Value v = eval(*s.expr, scope);
      if (v.is_string()) emit(out, v.as_string());
      else emit(out, to_str(v));
      return Flow::Normal;
    }
    case StmtKind::If:
      for (size_t i = 0; i < s.conditions.size(); ++i)
        if (truthy(eval(*s.conditions[i], scope))) return exec(s.branches[i], scope, out);
      if (s.branches.size() > s.conditions.size()) return exec(s.branches.back(), scope, out);
      return Flow::Normal;
    case StmtKind::For:
      return exec_for(s, scope, out);
    case StmtKind::Set:
      assign(s.target, eval(*s.expr, scope), *scope);
      return Flow::Normal;
    case StmtKind::SetBlock: {
      std::string captured;
      exec(s.body, std::make_shared<Scope>(scope), captured);
      assign(s.target, apply_filters(s.filters, Value::string(std::move(captured)), scope), *scope);
      return Flow::Normal;
    }
    case StmtKind::Macro:
      scope->set(s.name, make_macro(s, s.name, scope));
      return Flow::Normal;
    case StmtKind::CallBlock: {
      const Value caller = make_macro(s, "caller", scope);
      const Value result = eval_call(*s.expr, scope, &caller);
      emit(out, to_str(result));
      return Flow::Normal;
    }
    case StmtKind::FilterBlock: {
      std::string captured;
      exec(s.body, std::make_shared<Scope>(scope), captured);
      emit(out, to_str(apply_filters(s.filters, Value::string(std::move(captured)), scope)));
      return Flow::Normal;
    }
    case StmtKind::Break:
      return Flow::Break;
    case StmtKind::Continue:
      return Flow::Continue;
    case StmtKind::With: {
      auto inner = std::make_shared<Scope>(scope);
      for (const auto& [name, value] : s.params) inner->set(name, eval(*value, scope));
      exec(s.body, inner, out);
      return Flow::Normal;
    }
    case StmtKind::Scope:
      exec(s.body, std::make_shared<Scope>(scope), out);
      return Flow::Normal;
  }
  return Flow::Normal;
}

void Interpreter::assign(const Target& target, const Value& value, Scope& scope) {
  auto assign_item = [&scope](const Target::Item& item, const Value& v) {
    if (item.attribute.empty()) {
      scope.set(item.name, v);
      return;
    }
    const Value* ns = scope.lookup(item.name);
    if (!ns || !ns->is_object() || !ns->object()->is_namespace)
      throw_error("cannot assign attribute on non-namespace object");
    ns->object()->attributes.set(item.attribute, v);
  };
  if (!target.unpack) return assign_item(target.items[0], value);
  const auto values = iterate(value);
  const size_t want = target.items.size();
  if (values.size() < want) throw_error("not enough values to unpack (expected ", want, ", got ", values.size(), ")");
  if (values.size() > want) throw_error("too many values to unpack (expected ", want, ")");
  for (size_t i = 0; i < want; ++i) assign_item(target.items[i], values[i]);
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
  const Value iterable = eval(*s.expr, scope);
  std::vector<Value> items = iterate(iterable);
  if (s.loop_filter) {
    std::vector<Value> kept;
    for (auto& item : items) {
      tick();
      auto probe = std::make_shared<Scope>(scope);
      assign(s.target, item, *probe);
      if (truthy(eval(*s.loop_filter, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (!s.else_body.empty()) exec(s.else_body, std::make_shared<Scope>(scope), out);
    return Flow::Normal;
  }
  auto loop = std::make_shared<Object>();
  loop->type_name = "jinja2.runtime.LoopContext";
  loop->loop = std::make_shared<LoopState>();
  LoopState& state = *loop->loop;
  state.items = std::move(items);
  const Value loop_value = Value::object(loop);
  const auto n = static_cast<int64_t>(state.items.size());
  ScopePtr iteration;
  for (int64_t i = 0; i < n; ++i) {
    tick();
    state.index0 = i;
    // A fresh scope per iteration, reusing the previous one unless a macro captured it.
    if (!iteration || iteration->captured()) iteration = std::make_shared<Scope>(scope);
    else iteration->clear();
    assign(s.target, state.items[static_cast<size_t>(i)], *iteration);
    iteration->set("loop", loop_value);
    if (exec(s.body, iteration, out) == Flow::Break) break;
  }
  return Flow::Normal;
}

std::optional<Value> Interpreter::object_attribute(const Object& object, const std::string& name) {
  if (!object.loop) {
    if (const Value* v = object.attributes.find(name)) return *v;
    return std::nullopt;
  }
  const std::shared_ptr<LoopState> state = object.loop;
  const int64_t i = state->index0;
  const auto n = static_cast<int64_t>(state->items.size());
  if (name == "index0") return Value::integer(i);
  if (name == "index") return Value::integer(i + 1);
  if (name == "revindex0") return Value::integer(n - i - 1);
  if (name == "revindex") return Value::integer(n - i);
  if (name == "first") return Value::boolean(i == 0);
  if (name == "last") return Value::boolean(i == n - 1);
  if (name == "length") return Value::integer(n);
  if (name == "depth") return Value::integer(1);
  if (name == "depth0") return Value::integer(0);
  if (name == "previtem")
    return i > 0 ? state->items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item");
  if (name == "nextitem")
    return i + 1 < n ? state->items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item");
  if (name == "cycle")
    return Value::function("cycle", [state](CallArgs& args) -> Value {
      if (args.positional.empty()) throw_error("no items for cycling given");
      return args.positional[static_cast<size_t>(state->index0) % args.positional.size()];
    });
  if (name == "changed")
    return Value::function("changed", [state](CallArgs& args) -> Value {
      if (state->changed_called && equals(Value::list(state->last_changed), Value::list(args.positional)))
        return Value::boolean(false);
      state->changed_called = true;
      state->last_changed = args.positional;
      return Value::boolean(true);
    });
  return std::nullopt;
}

Value Interpreter::apply_filters(const std::vector<ExprPtr>& filters, Value input, const ScopePtr& scope) {
  for (const auto& f : filters) input = eval_filter(*f, std::move(input), scope);
  return input;
}

namespace {

// Which of the special names a macro body uses, as Jinja2 decides whether a macro accepts
// extra positional arguments (varargs), extra keywords (kwargs) and a caller.
void scan_names(const Expr* e, bool& varargs, bool& kwargs, bool& caller);

void scan_body(const Body& body, bool& varargs, bool& kwargs, bool& caller) {
  for (const auto& s : body) {
    scan_names(s->expr.get(), varargs, kwargs, caller);
    scan_names(s->loop_filter.get(), varargs, kwargs, caller);
    for (const auto& c : s->conditions) scan_names(c.get(), varargs, kwargs, caller);
    for (const auto& f : s->filters) scan_names(f.get(), varargs, kwargs, caller);
    for (const auto& p : s->params) scan_names(p.second.get(), varargs, kwargs, caller);
    for (const auto& b : s->branches) scan_body(b, varargs, kwargs, caller);
    // Nested macros have their own special names; call blocks pass through theirs.
    if (s->kind != StmtKind::Macro) {
      scan_body(s->body, varargs, kwargs, caller);
      scan_body(s->else_body, varargs, kwargs, caller);
    }
  }
}

void scan_names(const Expr* e, bool& varargs, bool& kwargs, bool& caller) {
  if (!e) return;
  if (e->kind == ExprKind::Name) {
    if (e->name == "varargs") varargs = true;
    if (e->name == "kwargs") kwargs = true;
    if (e->name == "caller") caller = true;
  }
  for (const auto& op : e->operands) scan_names(op.get(), varargs, kwargs, caller);
  for (const auto& kw : e->keywords) scan_names(kw.second.get(), varargs, kwargs, caller);
}

}  // namespace

Value Interpreter::make_macro(const Stmt& def, const std::string& name, const ScopePtr& scope) {
  if (!scope->captured()) {
    captured_scopes_.push_back(scope);
    scope->mark_captured();
    // A captured scope lives until the render ends; charge for it so that a loop defining
    // macros cannot pile up scopes without bound.
    steps_ += 16;
  }
  return Value::function(
      name, [this, &def, name, scope](CallArgs& args) { return invoke_macro(def, name, scope, args); }, true);
}

Value Interpreter::invoke_macro(const Stmt& def, const std::string& name, const ScopePtr& defining,
                                CallArgs& args) {
  tick();
  DepthGuard guard(*this);
  bool uses_varargs = false, uses_kwargs = false, uses_caller = false;
  scan_body(def.body, uses_varargs, uses_kwargs, uses_caller);
  auto scope = std::make_shared<Scope>(defining);
  const size_t n = def.params.size();
  std::vector<bool> bound(n, false);
  std::vector<Value> extra_positional;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < n) {
      scope->set(def.params[i].first, args.positional[i]);
      bound[i] = true;
    } else {
      extra_positional.push_back(args.positional[i]);
    }
  }
  Dict extra_keywords;
  bool has_caller = false;
  for (auto& [key, value] : args.keyword) {
    size_t i = 0;
    while (i < n && def.params[i].first != key) ++i;
    if (i < n) {
      if (bound[i]) throw_error("macro '", name, "' got multiple values for argument '", key, "'");
      scope->set(key, value);
      bound[i] = true;
    } else if (key == "caller" && uses_caller) {
      scope->set("caller", value);
      has_caller = true;
    } else {
      extra_keywords.set(key, value);
    }
  }
  if (!extra_positional.empty() && !uses_varargs)
    throw_error("macro '", name, "' takes not more than ", n, " argument(s)");
  if (extra_keywords.find("caller") && !uses_kwargs)
    throw_error("macro '", name, "' was invoked with two values for the special caller argument. This is most likely a bug.");
  if (extra_keywords.size() != 0 && !uses_kwargs)
    throw_error("macro '", name, "' takes no keyword argument '", extra_keywords.entries()[0].first, "'");
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) continue;
    const auto& [param, default_value] = def.params[i];
    if (default_value) scope->set(param, eval(*default_value, scope));
    else scope->set(param, Value::undefined("parameter '" + param + "' was not provided"));
  }
  if (uses_varargs) scope->set("varargs", Value::list(std::move(extra_positional), true));
  if (uses_kwargs) scope->set("kwargs", Value::dict(std::move(extra_keywords)));
  if (uses_caller && !has_caller) scope->set("caller", Value::undefined("No caller defined"));
  std::string out;
  exec(def.body, scope, out);
  return Value::string(std::move(out));
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_function()) {
    // Keep the function alive even if the call rebinds the variable that held it.
    auto keep = std::get<std::shared_ptr<Function>>(callee.storage());
    return keep->call(args);
  }
  if (callee.is_undefined()) fail_undefined(callee);
  throw_error("'", type_name(callee), "' object is not callable");
}

void Interpreter::eval_args(const Expr& e, size_t first, const ScopePtr& scope, CallArgs& args) {
  for (size_t i = first; i < e.operands.size(); ++i) args.positional.push_back(eval(*e.operands[i], scope));
  for (const auto& [key, expr] : e.keywords) {
    Value value = eval(*expr, scope);
    if (key == "*") {
      for (auto& item : iterate(value)) args.positional.push_back(std::move(item));
    } else if (key == "**") {
      if (!value.is_dict()) throw_error("argument after ** must be a mapping, not ", type_name(value));
      for (const auto& [k, v] : value.dict().entries()) args.keyword.emplace_back(k, v);
    } else {
      args.keyword.emplace_back(key, std::move(value));
    }
  }
}

Value Interpreter::eval_call(const Expr& e, const ScopePtr& scope, const Value* caller) {
  const Value callee = eval(*e.operands[0], scope);
  CallArgs args;
  eval_args(e, 1, scope, args);
  if (caller) args.keyword.emplace_back("caller", *caller);
  return call(callee, args);
}

Value Interpreter::eval_filter(const Expr& e, Value input, const ScopePtr& scope) {
  CallArgs args;
  eval_args(e, 1, scope, args);
  return call_filter(*this, e.name, std::move(input), args);
}

Value Interpreter::get_attr(const Value& object, const std::string& name) {
  if (object.is_undefined()) fail_undefined(object);
  if (object.is_object()) {
    if (auto v = object_attribute(*object.object(), name)) return *v;
    return undefined_attribute(object, name);
  }
  if (auto method = find_method(*this, object, name)) return *method;
  if (object.is_dict())
    if (const Value* v = object.dict().find(name)) return *v;
  return undefined_attribute(object, name);
}

Value Interpreter::get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) fail_undefined(object);
  if (object.is_dict() && key.is_string()) {
    if (const Value* v = object.dict().find(key.as_string())) return *v;
  } else if (object.is_list() && key.is_integral()) {
    const auto& items = object.list().items;
    int64_t i = key.as_int();
    if (i < 0) i += static_cast<int64_t>(items.size());
    if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
    return undefined_element(object, key);
  } else if (object.is_string() && key.is_integral()) {
    const auto chars = unicode::decode(object.as_string());
    int64_t i = key.as_int();
    if (i < 0) i += static_cast<int64_t>(chars.size());
    if (i >= 0 && i < static_cast<int64_t>(chars.size())) {
      std::string s;
      unicode::append_utf8(s, chars[static_cast<size_t>(i)]);
      return Value::string(std::move(s));
    }
    return undefined_element(object, key);
  } else if (object.is_object() && key.is_string()) {
    if (auto v = object_attribute(*object.object(), key.as_string())) return *v;
  }
  if (key.is_string() && !object.is_object())
    if (auto method = find_method(*this, object, key.as_string())) return *method;
  return undefined_element(object, key);
}

namespace {

// Python's slice.indices(): resolves optional, possibly negative bounds against a length.
void slice_bounds(int64_t len, const Value& start_v, const Value& stop_v, const Value& step_v, int64_t& start,
                  int64_t& stop, int64_t& step) {
  auto as_index = [](const Value& v) {
    if (!v.is_integral()) throw_error("slice indices must be integers or None or have an __index__ method");
    return v.as_int();
  };
  step = step_v.is_none() ? 1 : as_index(step_v);
  if (step == 0) throw_error("slice step cannot be zero");
  if (step == std::numeric_limits<int64_t>::min()) step = -std::numeric_limits<int64_t>::max();
  auto adjust = [&](const Value& v, int64_t fallback) {
    if (v.is_none()) return fallback;
    int64_t i = as_index(v);
    if (i < 0) {
      i = (i < -len) ? (step < 0 ? -1 : 0) : i + len;
    } else if (i >= len) {
      i = step < 0 ? len - 1 : len;
    }
    return i;
  };
  start = adjust(start_v, step < 0 ? len - 1 : 0);
  stop = adjust(stop_v, step < 0 ? -1 : len);
}

template <typename T>
std::vector<T> slice_vector(const std::vector<T>& items, int64_t start, int64_t stop, int64_t step) {
  std::vector<T> out;
  if (step > 0)
    for (int64_t i = start; i < stop; i += step) out.push_back(items[static_cast<size_t>(i)]);
  else
    for (int64_t i = start; i > stop; i += step) out.push_back(items[static_cast<size_t>(i)]);
  return out;
}

}  // namespace

Value Interpreter::eval_slice(const Expr& e, const ScopePtr& scope) {
  const Value object = eval(*e.operands[0], scope);
  auto part = [&](size_t i) { return e.operands[i] ? eval(*e.operands[i], scope) : Value::none(); };
  const Value start_v = part(1), stop_v = part(2), step_v = part(3);
  if (object.is_undefined()) fail_undefined(object);
  int64_t start, stop, step;
  if (object.is_list()) {
    const auto& items = object.list().items;
    slice_bounds(static_cast<int64_t>(items.size()), start_v, stop_v, step_v, start, stop, step);
    return Value::list(slice_vector(items, start, stop, step), object.is_tuple());
  }
  if (object.is_string()) {
    const auto chars = unicode::decode(object.as_string());
    slice_bounds(static_cast<int64_t>(chars.size()), start_v, stop_v, step_v, start, stop, step);
    return Value::string(unicode::encode(slice_vector(chars, start, stop, step)));
  }
  // Jinja2 slices with Python's own subscript, so errors are raised, not undefined.
  if (object.is_dict()) throw_error("unhashable type: 'slice'");
  throw_error("'", type_name(object), "' object is not subscriptable");
}

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
  DepthGuard guard(*this);
  switch (e.kind) {
    case ExprKind::Literal:
      return e.literal;
    case ExprKind::Name:
      if (const Value* v = scope->lookup(e.name)) return *v;
      return undefined_name(e.name);
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.operands.size());
      for (const auto& op : e.operands) items.push_back(eval(*op, scope));
      return Value::list(std::move(items), e.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.operands.size(); i += 2) {
        const Value key = eval(*e.operands[i], scope);
        if (!key.is_string()) throw_error("only string dict keys are supported, got ", type_name(key));
        d.set(key.as_string(), eval(*e.operands[i + 1], scope));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::GetAttr:
      return get_attr(eval(*e.operands[0], scope), e.name);
    case ExprKind::GetItem: {
      const Value object = eval(*e.operands[0], scope);
      return get_item(object, eval(*e.operands[1], scope));
    }
    case ExprKind::Slice:
      return eval_slice(e, scope);
    case ExprKind::Call:
      return eval_call(e, scope, nullptr);
    case ExprKind::Filter:
      return eval_filter(e, eval(*e.operands[0], scope), scope);
    case ExprKind::Test: {
      const Value input = eval(*e.operands[0], scope);
      CallArgs args;
      eval_args(e, 1, scope, args);
      return Value::boolean(call_test(*this, e.name, input, args) != e.negated);
    }
    case ExprKind::Unary: {
      const Value v = eval(*e.operands[0], scope);
      if (v.is_undefined()) fail_undefined(v);
      if (v.is_float()) return Value::number(e.name == "-" ? -v.as_double() : v.as_double());
      if (v.is_integral()) {
        if (e.name == "+") return Value::integer(v.as_int());
        if (v.as_int() == std::numeric_limits<int64_t>::min()) integer_overflow();
        return Value::integer(-v.as_int());
      }
      throw_error("bad operand type for unary ", e.name, ": '", type_name(v), "'");
    }
    case ExprKind::Binary: {
      const Value left = eval(*e.operands[0], scope);
      const Value right = eval(*e.operands[1], scope);
      return binary_op(e.name, left, right, *this);
    }
    case ExprKind::Compare: {
      Value left = eval(*e.operands[0], scope);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.operands[i + 1], scope);
        const std::string& op = e.ops[i];
        bool ok;
        if (op == "==") ok = equals(left, right);
        else if (op == "!=") ok = !equals(left, right);
        else if (op == "in") ok = contains(right, left);
        else if (op == "not in") ok = !contains(right, left);
        else {
          const int c = compare(left, right, op);
          ok = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
        }
        if (!ok) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case ExprKind::And: {
      Value left = eval(*e.operands[0], scope);
      if (!truthy(left)) return left;
      return eval(*e.operands[1], scope);
    }
    case ExprKind::Or: {
      Value left = eval(*e.operands[0], scope);
      if (truthy(left)) return left;
      return eval(*e.operands[1], scope);
    }
    case ExprKind::Not:
      return Value::boolean(!truthy(eval(*e.operands[0], scope)));
    case ExprKind::Conditional:
      if (truthy(eval(*e.operands[1], scope))) return eval(*e.operands[0], scope);
      if (e.operands[2]) return eval(*e.operands[2], scope);
      return Value::undefined(cat("the inline if-expression on line ", e.line,
                                  " evaluated to false and no else section was defined."));
    case ExprKind::Concat: {
      // Sizes are checked before anything is copied, so oversized results fail fast.
      std::vector<Value> parts;
      parts.reserve(e.operands.size());
      size_t total = 0;
      for (const auto& op : e.operands) {
        Value v = eval(*op, scope);
        if (!v.is_string()) v = Value::string(to_str(v));
        total += v.as_string().size();
        check_size(total);
        parts.push_back(std::move(v));
      }
      produced(total);
      std::string out;
      out.reserve(total);
      for (const auto& part : parts) out += part.as_string();
      return Value::string(std::move(out));
    }
  }
  throw_error("unknown expression");
}

bool contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string())
      throw_error("'in <string>' requires string as left operand, not ", type_name(item));
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_list()) {
    for (const auto& v : container.list().items)
      if (equals(v, item)) return true;
    return false;
  }
  if (container.is_dict()) {
    if (item.is_list() && !item.is_tuple()) throw_error("unhashable type: 'list'");
    if (item.is_dict()) throw_error("unhashable type: 'dict'");
    return item.is_string() && container.dict().find(item.as_string()) != nullptr;
  }
  if (container.is_iterable()) {
    for (const auto& v : iterate(container))
      if (equals(v, item)) return true;
    return false;
  }
  if (container.is_undefined()) return false;
  throw_error("argument of type '", type_name(container), "' is not iterable");
}

Value binary_op(const std::string& op, const Value& a, const Value& b, Interpreter& interp) {
  if (a.is_undefined()) fail_undefined(a);
  // str % x formats x with str.__mod__, which accepts even an undefined x.
  if (b.is_undefined() && !(op == "%" && a.is_string())) fail_undefined(b);
  const bool ints = a.is_integral() && b.is_integral();
  const bool numbers = a.is_number() && b.is_number();
  int64_t r;
  if (op == "+") {
    if (ints) {
      if (add_overflows(a.as_int(), b.as_int(), &r)) integer_overflow();
      return Value::integer(r);
    }
    if (numbers) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string() && (a.is_markup() || b.is_markup())) {
      // Markup + str escapes the plain side (markupsafe's __add__ / __radd__).
      std::string joined = a.is_markup() ? a.as_string() : html_escape(a.as_string());
      joined += b.is_markup() ? b.as_string() : html_escape(b.as_string());
      interp.produced(joined.size());
      return Value::markup(std::move(joined));
    }
    if (a.is_markup()) unsupported("+", a, b);
    if (a.is_string() && b.is_string()) {
      interp.produced(a.as_string().size() + b.as_string().size());
      std::string joined;
      joined.reserve(a.as_string().size() + b.as_string().size());
      joined += a.as_string();
      joined += b.as_string();
      return Value::string(std::move(joined));
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      std::vector<Value> items = a.list().items;
      items.insert(items.end(), b.list().items.begin(), b.list().items.end());
      interp.produced(items.size() * sizeof(Value));
      return Value::list(std::move(items), a.is_tuple());
    }
    if (a.is_string() || a.is_list())
      throw_error("can only concatenate ", type_name(a), " (not \"", type_name(b), "\") to ", type_name(a));
    unsupported("+", a, b);
  }
  if (op == "-") {
    if (ints) {
      if (sub_overflows(a.as_int(), b.as_int(), &r)) integer_overflow();
      return Value::integer(r);
    }
    if (numbers) return Value::number(a.as_double() - b.as_double());
    unsupported("-", a, b);
  }
  if (op == "*") {
    if (ints) {
      if (mul_overflows(a.as_int(), b.as_int(), &r)) integer_overflow();
      return Value::integer(r);
    }
    if (numbers) return Value::number(a.as_double() * b.as_double());
    const bool a_is_sequence = a.is_string() || a.is_list();
    const Value* seq = a_is_sequence ? &a : &b;
    const Value* count = a_is_sequence ? &b : &a;
    if (count->is_integral() && seq->is_string()) return Value::string(repeat(seq->as_string(), count->as_int(), interp));
    if (count->is_integral() && seq->is_list()) {
      std::vector<Value> items;
      const auto& src = seq->list().items;
      const int64_t times = count->as_int();
      if (times > 0 && !src.empty()) {
        if (static_cast<uint64_t>(times) > (kMaxStringBytes / 16) / src.size()) interp.check_size(kMaxStringBytes + 1);
        for (int64_t i = 0; i < times; ++i) items.insert(items.end(), src.begin(), src.end());
        interp.produced(items.size() * sizeof(Value));
      }
      return Value::list(std::move(items), seq->is_tuple());
    }
    if (seq->is_string() || seq->is_list())
      throw_error("can't multiply sequence by non-int of type '", type_name(*count), "'");
    unsupported("*", a, b);
  }
  if (op == "/") {
    if (!numbers) unsupported("/", a, b);
    if (b.as_double() == 0) throw_error(ints ? "division by zero" : "float division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (ints) return Value::integer(floor_div(a.as_int(), b.as_int()));
    if (!numbers) unsupported("//", a, b);
    if (b.as_double() == 0) throw_error("float floor division by zero");
    return Value::number(std::floor(a.as_double() / b.as_double()));
  }
  if (op == "%") {
    if (a.is_string()) {
      std::string s = percent_format(a.as_string(), b, a.is_markup());
      interp.produced(s.size());
      return a.is_markup() ? Value::markup(std::move(s)) : Value::string(std::move(s));
    }
    if (ints) return Value::integer(floor_mod(a.as_int(), b.as_int()));
    if (!numbers) unsupported("%", a, b);
    if (b.as_double() == 0) throw_error("float modulo");
    double m = std::fmod(a.as_double(), b.as_double());
    if (m != 0 && ((m < 0) != (b.as_double() < 0))) m += b.as_double();
    return Value::number(m);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), exp = b.as_int(), result = 1;
      while (exp > 0) {
        if (exp & 1)
          if (mul_overflows(result, base, &result)) integer_overflow();
        exp >>= 1;
        if (exp > 0 && mul_overflows(base, base, &base)) integer_overflow();
      }
      return Value::integer(result);
    }
    if (!numbers) unsupported("** or pow()", a, b);
    if (a.as_double() == 0 && b.as_double() < 0) throw_error("0.0 cannot be raised to a negative power");
    return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  throw_error("unknown operator ", op);
}

}  // namespace endless::jinja
