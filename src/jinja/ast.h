// Syntax tree of a parsed template.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "jinja/value.h"

namespace endless::jinja {

enum class ExprKind {
  Literal,      // literal
  Name,         // name
  List,         // operands: items
  Tuple,        // operands: items
  Dict,         // operands: key, value, key, value, ...
  GetAttr,      // operands: [object]; name: the attribute (x.name)
  GetItem,      // operands: [object, key] (x[key])
  Slice,        // operands: [object, start, stop, step], absent parts are null
  Call,         // operands: [callee, positional args...]; keywords
  Filter,       // operands: [input, args...]; name; keywords. In filter blocks the input is null.
  Test,         // operands: [input, args...]; name; negated
  Unary,        // operands: [x]; name: "-" or "+"
  Binary,       // operands: [left, right]; name: the operator
  Compare,      // operands: [first, others...]; ops: one operator per other operand
  And,          // operands: [left, right]
  Or,           // operands: [left, right]
  Not,          // operands: [x]
  Conditional,  // operands: [then, condition, else or null]
  Concat,       // operands: the parts joined by ~
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> operands;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  std::vector<std::string> ops;
  bool negated = false;
  // Height of this subtree; bounded by the parser so evaluation recursion is bounded.
  int depth = 1;
};

// Left-hand side of set / for: `x`, `a, b` (unpacking) or a namespace attribute `ns.attr`.
struct Target {
  struct Item {
    std::string name;
    std::string attribute;  // non-empty for `name.attribute`
  };
  std::vector<Item> items;
  bool unpack = false;
};

enum class StmtKind {
  Text,         // text
  Output,       // expr: {{ expr }}
  If,           // conditions[i] guards branches[i]; an extra last branch is the else
  For,          // target, expr (iterable), loop_filter, body, else_body
  Set,          // target = expr
  SetBlock,     // target, filters (null-input Filter exprs), body
  Macro,        // name, params, body
  CallBlock,    // expr (the Call), params (caller's parameters), body (the caller)
  FilterBlock,  // filters, body
  Break,
  Continue,
  With,         // params: (name, value) assignments, body
  Scope,        // body rendered in its own scope ({% generation %})
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  std::vector<ExprPtr> conditions;
  std::vector<Body> branches;
  Target target;
  ExprPtr loop_filter;
  Body body;
  Body else_body;
  std::vector<ExprPtr> filters;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;
};

}  // namespace endless::jinja
