// Evaluates a parsed template against a context, with Jinja2's scoping rules: for-loop
// iterations, macros, call/filter/set blocks and `with` get their own scope; `if` does not.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "jinja/ast.h"
#include "jinja/jinja.h"
#include "jinja/value.h"

namespace endless::jinja {

namespace detail {
struct Program {
  Body body;
};
}  // namespace detail

class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  const Value* lookup(const std::string& name) const;
  void set(const std::string& name, Value value) { vars_[name] = std::move(value); }
  // Drops every variable: breaks reference cycles between scopes and the macros they hold.
  void clear() { vars_.clear(); }
  // Whether a macro or caller holds this scope (so a loop must not reuse it).
  bool captured() const { return captured_; }
  void mark_captured() { captured_ = true; }

 private:
  std::shared_ptr<Scope> parent_;
  std::unordered_map<std::string, Value> vars_;
  bool captured_ = false;
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
 public:
  explicit Interpreter(const Options& options) : options_(options) {}
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Body& body, const nlohmann::ordered_json& context);

  Value eval(const Expr& e, const ScopePtr& scope);
  Value call(const Value& callee, CallArgs& args);
  // environment.getattr (x.name: attribute first, then item) and getitem (x[key]: the reverse).
  Value get_attr(const Value& object, const std::string& name);
  Value get_item(const Value& object, const Value& key);
  // An attribute of a namespace or loop object; nullopt when it has none of that name.
  std::optional<Value> object_attribute(const Object& object, const std::string& name);

  const Options& options() const { return options_; }
  // Counts one loop iteration or call against the render's budget.
  void tick();
  // Rejects strings that would exceed the output size limit.
  void check_size(size_t bytes) const;
  // Accounts for a newly built string or list of `bytes`: checks the size limit and charges the
  // copying against the budget, so loops that keep rebuilding big strings stop.
  void produced(size_t bytes);
  // A namespace() object; tracked so that cycles through it are broken after rendering.
  std::shared_ptr<Object> new_namespace();

 private:
  enum class Flow { Normal, Break, Continue };

  Flow exec(const Body& body, const ScopePtr& scope, std::string& out);
  Flow exec_stmt(const Stmt& s, const ScopePtr& scope, std::string& out);
  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string& out);
  void assign(const Target& target, const Value& value, Scope& scope);
  Value apply_filters(const std::vector<ExprPtr>& filters, Value input, const ScopePtr& scope);
  Value eval_call(const Expr& e, const ScopePtr& scope, const Value* caller);
  Value eval_filter(const Expr& e, Value input, const ScopePtr& scope);
  Value eval_slice(const Expr& e, const ScopePtr& scope);
  void eval_args(const Expr& e, size_t first, const ScopePtr& scope, CallArgs& args);
  Value make_macro(const Stmt& def, const std::string& name, const ScopePtr& scope);
  Value invoke_macro(const Stmt& def, const std::string& name, const ScopePtr& defining, CallArgs& args);
  void emit(std::string& out, std::string_view text) const;

  const Options& options_;
  int64_t steps_ = 0;
  int depth_ = 0;
  std::vector<ScopePtr> captured_scopes_;
  std::vector<std::weak_ptr<Object>> namespaces_;
  friend class DepthGuard;
};

Value binary_op(const std::string& op, const Value& left, const Value& right, Interpreter& interp);
bool contains(const Value& container, const Value& item);

}  // namespace endless::jinja
