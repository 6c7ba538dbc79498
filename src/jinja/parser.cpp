#include "jinja/parser.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <initializer_list>

#include "jinja/builtins.h"
#include "jinja/lexer.h"

namespace endless::jinja {
namespace {

// Bounds on nesting, so that hostile templates fail with an error instead of exhausting the
// stack: parser recursion (brackets, unary operators, nested blocks) and expression tree height.
constexpr int kMaxParseDepth = 400;
constexpr int kMaxExprDepth = 300;

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::Text: return "template data";
    case TokenType::VariableBegin: return "'{{'";
    case TokenType::VariableEnd: return "end of print statement";
    case TokenType::BlockBegin: return "'{%'";
    case TokenType::BlockEnd: return "end of statement block";
    case TokenType::End: return "end of template";
    case TokenType::String: return "string";
    default: return "'" + t.value + "'";
  }
}

bool is_reserved_name(const std::string& name) {
  return name == "true" || name == "false" || name == "none" || name == "True" || name == "False" ||
         name == "None";
}

class Parser {
 public:
  Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse() {
    Body body = subparse({});
    if (cur().type != TokenType::End) fail("unexpected " + describe(cur()));
    return body;
  }

 private:
  class DepthGuard {
   public:
    explicit DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxParseDepth) p_.fail("template is nested too deeply");
    }
    ~DepthGuard() { --p_.depth_; }

   private:
    Parser& p_;
  };

  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t k = 1) const { return tokens_[std::min(pos_ + k, tokens_.size() - 1)]; }
  void next() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  [[noreturn]] void fail(const std::string& message) const { syntax_error(cur().line, message); }

  bool at_op(std::string_view op) const { return cur().type == TokenType::Operator && cur().value == op; }
  bool at_name(std::string_view name) const { return cur().type == TokenType::Name && cur().value == name; }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    next();
    return true;
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail(cat("expected '", op, "', got ", describe(cur())));
  }
  std::string expect_name() {
    if (cur().type != TokenType::Name) fail("expected a name, got " + describe(cur()));
    std::string name = cur().value;
    next();
    return name;
  }
  void expect_block_end() {
    if (cur().type != TokenType::BlockEnd) fail("expected end of statement block, got " + describe(cur()));
    next();
  }
  // The end of a tag that opens a body; Jinja2 allows a Python-style colon before it.
  void expect_body_start() {
    skip_op(":");
    expect_block_end();
  }

  ExprPtr make(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // Records the subtree height and rejects trees too tall to evaluate safely.
  ExprPtr finish(ExprPtr e) {
    int depth = 0;
    for (const auto& op : e->operands)
      if (op) depth = std::max(depth, op->depth);
    for (const auto& kw : e->keywords) depth = std::max(depth, kw.second->depth);
    e->depth = depth + 1;
    if (e->depth > kMaxExprDepth) syntax_error(e->line, "expression is nested too deeply");
    return e;
  }

  ExprPtr binary(ExprKind kind, std::string op, ExprPtr left, ExprPtr right, int line) {
    auto e = make(kind, line);
    e->name = std::move(op);
    e->operands.push_back(std::move(left));
    e->operands.push_back(std::move(right));
    return finish(std::move(e));
  }

  // ---- statements ----

  // Parses until a block tag named in `end_names` (left current, after its '{%'), or the end.
  Body subparse(std::initializer_list<std::string_view> end_names) {
    DepthGuard guard(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == TokenType::End) {
        if (end_names.size() != 0) {
          std::string expected;
          for (auto name : end_names) expected += (expected.empty() ? "'" : " or '") + std::string(name) + "'";
          fail("Unexpected end of template. Jinja was looking for the following tags: " + expected + ".");
        }
        return body;
      }
      if (t.type == TokenType::Text) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Text;
        s->line = t.line;
        s->text = t.value;
        body.push_back(std::move(s));
        next();
      } else if (t.type == TokenType::VariableBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Output;
        s->line = t.line;
        next();
        s->expr = parse_tuple(false, true, {}, false);
        if (cur().type != TokenType::VariableEnd) fail("expected end of print statement, got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.type == TokenType::BlockBegin) {
        next();
        if (cur().type != TokenType::Name) fail("tag name expected");
        if (std::find(end_names.begin(), end_names.end(), cur().value) != end_names.end()) return body;
        body.push_back(parse_statement());
      } else {
        fail("unexpected " + describe(t));
      }
    }
  }

  StmtPtr new_stmt(StmtKind kind) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = cur().line;
    return s;
  }

  StmtPtr parse_statement() {
    const std::string tag = cur().value;
    if (tag == "if") return parse_if();
    if (tag == "for") return parse_for();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "generation") {
      auto s = new_stmt(StmtKind::Scope);
      next();
      expect_body_start();
      s->body = subparse({"endgeneration"});
      next();
      expect_block_end();
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) fail("'" + tag + "' outside of a loop");
      auto s = new_stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue);
      next();
      expect_block_end();
      return s;
    }
    if (tag == "include" || tag == "extends" || tag == "import" || tag == "from" || tag == "block")
      fail("'" + tag + "' is not supported in chat templates");
    fail("Encountered unknown tag '" + tag + "'.");
  }

  StmtPtr parse_if() {
    auto s = new_stmt(StmtKind::If);
    next();
    s->conditions.push_back(parse_tuple(false, false, {}, false));
    expect_body_start();
    while (true) {
      s->branches.push_back(subparse({"elif", "else", "endif"}));
      const std::string tag = cur().value;
      next();
      if (tag == "elif") {
        s->conditions.push_back(parse_tuple(false, false, {}, false));
        expect_body_start();
      } else if (tag == "else") {
        expect_body_start();
        s->branches.push_back(subparse({"endif"}));
        next();
        expect_block_end();
        return s;
      } else {
        expect_block_end();
        return s;
      }
    }
  }

  // Assignment targets: `x`, `a, b`, `(a, b)`, `a,`; with `with_namespace` items may also be
  // namespace attributes (`ns.attr`), as in `{% set ns.total = 0 %}`.
  Target parse_target(bool with_namespace) {
    Target target;
    const bool paren = skip_op("(");
    bool trailing_comma = false;
    while (true) {
      const int line = cur().line;
      Target::Item item;
      item.name = expect_name();
      if (is_reserved_name(item.name)) syntax_error(line, "can't assign to '" + item.name + "'");
      if (with_namespace && !paren && skip_op(".")) item.attribute = expect_name();
      target.items.push_back(std::move(item));
      trailing_comma = skip_op(",");
      if (!trailing_comma || (paren ? at_op(")") : cur().type != TokenType::Name)) break;
    }
    if (paren) expect_op(")");
    target.unpack = target.items.size() > 1 || trailing_comma;
    return target;
  }

  StmtPtr parse_for() {
    auto s = new_stmt(StmtKind::For);
    next();
    s->target = parse_target(false);
    if (!skip_name("in")) fail("expected 'in', got " + describe(cur()));
    s->expr = parse_tuple(false, false, {"recursive", "if"}, false);
    if (skip_name("if")) s->loop_filter = parse_expression(true);
    if (at_name("recursive")) fail("recursive loops are not supported");
    expect_body_start();
    ++loop_depth_;
    s->body = subparse({"endfor", "else"});
    --loop_depth_;
    if (cur().value == "else") {
      next();
      expect_body_start();
      s->else_body = subparse({"endfor"});
    }
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_set() {
    auto s = new_stmt(StmtKind::Set);
    next();
    s->target = parse_target(true);
    if (skip_op("=")) {
      s->expr = parse_tuple(false, true, {}, false);
      expect_block_end();
      return s;
    }
    s->kind = StmtKind::SetBlock;
    if (at_op("|")) s->filters = parse_filter_chain(false);
    expect_body_start();
    s->body = subparse({"endset"});
    next();
    expect_block_end();
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    bool seen_default = false;
    while (!at_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (at_op(")")) break;
      const int line = cur().line;
      std::string name = expect_name();
      if (is_reserved_name(name)) syntax_error(line, "can't assign to '" + name + "'");
      ExprPtr default_value;
      if (skip_op("=")) {
        default_value = parse_expression(true);
        seen_default = true;
      } else if (seen_default) {
        syntax_error(line, "non-default argument follows default argument");
      }
      s.params.emplace_back(std::move(name), std::move(default_value));
    }
    next();
  }

  StmtPtr parse_macro() {
    auto s = new_stmt(StmtKind::Macro);
    next();
    s->name = expect_name();
    parse_signature(*s);
    expect_body_start();
    // Loop controls do not reach through a macro into an enclosing loop.
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endmacro"});
    loop_depth_ = saved_loops;
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block() {
    auto s = new_stmt(StmtKind::CallBlock);
    next();
    if (at_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::Call) fail("expected call");
    expect_body_start();
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endcall"});
    loop_depth_ = saved_loops;
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_filter_block() {
    auto s = new_stmt(StmtKind::FilterBlock);
    next();
    s->filters = parse_filter_chain(true);
    expect_body_start();
    s->body = subparse({"endfilter"});
    next();
    expect_block_end();
    return s;
  }

  StmtPtr parse_with() {
    auto s = new_stmt(StmtKind::With);
    next();
    while (cur().type != TokenType::BlockEnd) {
      if (!s->params.empty()) expect_op(",");
      const int line = cur().line;
      std::string name = expect_name();
      if (is_reserved_name(name)) syntax_error(line, "can't assign to '" + name + "'");
      expect_op("=");
      s->params.emplace_back(std::move(name), parse_expression(true));
    }
    expect_body_start();
    s->body = subparse({"endwith"});
    next();
    expect_block_end();
    return s;
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<std::string_view> extra_end) const {
    const auto type = cur().type;
    if (type == TokenType::VariableEnd || type == TokenType::BlockEnd || type == TokenType::End || at_op(")"))
      return true;
    if (type == TokenType::Name)
      for (auto name : extra_end)
        if (cur().value == name) return true;
    return false;
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr, std::initializer_list<std::string_view> extra_end,
                      bool explicit_parentheses) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      if (simplified) items.push_back(parse_primary());
      else items.push_back(parse_expression(with_condexpr));
      if (at_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) fail("expected an expression, got " + describe(cur()));
    }
    auto e = make(ExprKind::Tuple, line);
    e->operands = std::move(items);
    return finish(std::move(e));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr expr = parse_or();
    while (at_name("if")) {
      const int line = cur().line;
      next();
      ExprPtr condition = parse_or();
      ExprPtr otherwise;
      if (skip_name("else")) otherwise = parse_condexpr();
      auto e = make(ExprKind::Conditional, line);
      e->operands.push_back(std::move(expr));
      e->operands.push_back(std::move(condition));
      e->operands.push_back(std::move(otherwise));
      expr = finish(std::move(e));
    }
    return expr;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      const int line = cur().line;
      next();
      left = binary(ExprKind::Or, "or", std::move(left), parse_and(), line);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      const int line = cur().line;
      next();
      left = binary(ExprKind::And, "and", std::move(left), parse_not(), line);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      DepthGuard guard(*this);
      auto e = make(ExprKind::Not, cur().line);
      next();
      e->operands.push_back(parse_not());
      return finish(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr first = parse_math1();
    ExprPtr e;
    while (true) {
      std::string op;
      if (cur().type == TokenType::Operator &&
          (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == ">" ||
           cur().value == "<=" || cur().value == ">=")) {
        op = cur().value;
        next();
      } else if (at_name("in")) {
        op = "in";
        next();
      } else if (at_name("not") && peek().type == TokenType::Name && peek().value == "in") {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!e) {
        e = make(ExprKind::Compare, line);
        e->operands.push_back(std::move(first));
      }
      e->ops.push_back(op);
      e->operands.push_back(parse_math1());
    }
    if (!e) return first;
    return finish(std::move(e));
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      const int line = cur().line;
      std::string op = cur().value;
      next();
      left = binary(ExprKind::Binary, op, std::move(left), parse_concat(), line);
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr first = parse_math2();
    if (!at_op("~")) return first;
    auto e = make(ExprKind::Concat, line);
    e->operands.push_back(std::move(first));
    while (skip_op("~")) e->operands.push_back(parse_math2());
    return finish(std::move(e));
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const int line = cur().line;
      std::string op = cur().value;
      next();
      left = binary(ExprKind::Binary, op, std::move(left), parse_pow(), line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (at_op("**")) {
      const int line = cur().line;
      next();
      left = binary(ExprKind::Binary, "**", std::move(left), parse_unary(true), line);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      auto e = make(ExprKind::Unary, cur().line);
      e->name = cur().value;
      next();
      e->operands.push_back(parse_unary(false));
      node = finish(std::move(e));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr literal(Value v, int line) {
    auto e = make(ExprKind::Literal, line);
    e->literal = std::move(v);
    return e;
  }

  ExprPtr parse_primary() {
    DepthGuard guard(*this);
    const Token& t = cur();
    const int line = t.line;
    switch (t.type) {
      case TokenType::Name: {
        std::string name = t.value;
        next();
        if (name == "true" || name == "True") return literal(Value::boolean(true), line);
        if (name == "false" || name == "False") return literal(Value::boolean(false), line);
        if (name == "none" || name == "None") return literal(Value::none(), line);
        auto e = make(ExprKind::Name, line);
        e->name = std::move(name);
        return e;
      }
      case TokenType::String: {
        std::string s;
        while (cur().type == TokenType::String) {
          s += cur().value;
          next();
        }
        return literal(Value::string(std::move(s)), line);
      }
      case TokenType::Integer: {
        int64_t v = 0;
        const auto& text = t.value;
        auto result = std::from_chars(text.data(), text.data() + text.size(), v);
        if (result.ec != std::errc() || result.ptr != text.data() + text.size())
          syntax_error(line, "integer literal " + text + " is too large");
        next();
        return literal(Value::integer(v), line);
      }
      case TokenType::Float: {
        const double v = std::strtod(t.value.c_str(), nullptr);
        next();
        return literal(Value::number(v), line);
      }
      case TokenType::Operator:
        if (t.value == "(") {
          next();
          ExprPtr e = parse_tuple(false, true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.value == "[") return parse_list();
        if (t.value == "{") return parse_dict();
        break;
      default:
        break;
    }
    fail("unexpected " + describe(t));
  }

  ExprPtr parse_list() {
    auto e = make(ExprKind::List, cur().line);
    expect_op("[");
    while (!at_op("]")) {
      if (!e->operands.empty()) expect_op(",");
      if (at_op("]")) break;
      e->operands.push_back(parse_expression(true));
    }
    next();
    return finish(std::move(e));
  }

  ExprPtr parse_dict() {
    auto e = make(ExprKind::Dict, cur().line);
    expect_op("{");
    while (!at_op("}")) {
      if (!e->operands.empty()) expect_op(",");
      if (at_op("}")) break;
      e->operands.push_back(parse_expression(true));
      expect_op(":");
      e->operands.push_back(parse_expression(true));
    }
    next();
    return finish(std::move(e));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (at_op(".") || at_op("[")) node = parse_subscript(std::move(node));
      else if (at_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (at_op("|")) {
        auto chain = parse_filter_chain(false, std::move(node));
        node = std::move(chain.back());
      } else if (at_name("is")) {
        node = parse_test(std::move(node));
      } else if (at_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const int line = cur().line;
    if (skip_op(".")) {
      if (cur().type == TokenType::Name) {
        auto e = make(ExprKind::GetAttr, line);
        e->name = cur().value;
        next();
        e->operands.push_back(std::move(node));
        return finish(std::move(e));
      }
      if (cur().type == TokenType::Integer) {
        auto e = make(ExprKind::GetItem, line);
        e->operands.push_back(std::move(node));
        e->operands.push_back(parse_primary());
        return finish(std::move(e));
      }
      fail("expected name or number");
    }
    expect_op("[");
    ExprPtr start, stop, step;
    bool is_slice = false;
    if (at_op("]")) {
      start = finish(make(ExprKind::Tuple, line));  // x[] subscripts with the empty tuple
    } else if (!at_op(":")) {
      start = parse_expression(true);
    }
    if (skip_op(":")) {
      is_slice = true;
      if (!at_op("]") && !at_op(":")) stop = parse_expression(true);
      if (skip_op(":") && !at_op("]")) step = parse_expression(true);
    }
    if (!is_slice && at_op(",")) {
      // x[a, b] subscripts with the tuple (a, b).
      auto tuple = make(ExprKind::Tuple, line);
      tuple->operands.push_back(std::move(start));
      while (skip_op(",")) tuple->operands.push_back(parse_expression(true));
      start = finish(std::move(tuple));
    }
    expect_op("]");
    if (!is_slice) {
      auto e = make(ExprKind::GetItem, line);
      e->operands.push_back(std::move(node));
      e->operands.push_back(std::move(start));
      return finish(std::move(e));
    }
    auto e = make(ExprKind::Slice, line);
    e->operands.push_back(std::move(node));
    e->operands.push_back(std::move(start));
    e->operands.push_back(std::move(stop));
    e->operands.push_back(std::move(step));
    return finish(std::move(e));
  }

  // Parses "(args)" into `e`'s operands (after those already there) and keywords. `*seq` and
  // `**mapping` become keywords named "*" and "**", spread when the call is evaluated.
  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true, star = false, double_star = false;
    while (!at_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (at_op(")")) break;
      if (at_op("*") || at_op("**")) {
        const bool is_double = at_op("**");
        if (double_star || (star && !is_double)) fail("invalid syntax for function call expression");
        next();
        (is_double ? double_star : star) = true;
        e.keywords.emplace_back(is_double ? "**" : "*", parse_expression(true));
      } else if (cur().type == TokenType::Name && peek().type == TokenType::Operator && peek().value == "=") {
        if (double_star) fail("invalid syntax for function call expression");
        std::string name = cur().value;
        next();
        next();
        e.keywords.emplace_back(std::move(name), parse_expression(true));
      } else {
        if (!e.keywords.empty()) fail("invalid syntax for function call expression");
        e.operands.push_back(parse_expression(true));
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr node) {
    auto e = make(ExprKind::Call, cur().line);
    e->operands.push_back(std::move(node));
    parse_call_args(*e);
    return finish(std::move(e));
  }

  std::string parse_dotted_name() {
    std::string name = expect_name();
    while (skip_op(".")) name += "." + expect_name();
    return name;
  }

  // `| f(args) | g` applied to `input`; returns the chain's nodes, the last being the result
  // when `input` is given. Filter blocks pass no input and keep every node.
  std::vector<ExprPtr> parse_filter_chain(bool start_inline, ExprPtr input = nullptr) {
    const bool keep_all = !input;
    std::vector<ExprPtr> chain;
    while (start_inline || at_op("|")) {
      if (!start_inline) next();
      start_inline = false;
      auto e = make(ExprKind::Filter, cur().line);
      e->name = parse_dotted_name();
      if (keep_all) {
        e->operands.push_back(nullptr);
      } else {
        e->operands.push_back(std::move(input));
      }
      if (at_op("(")) parse_call_args(*e);
      ExprPtr done = finish(std::move(e));
      if (keep_all) chain.push_back(std::move(done));
      else input = std::move(done);
      if (!keep_all && !at_op("|")) break;
    }
    if (!keep_all) chain.push_back(std::move(input));
    return chain;
  }

  ExprPtr parse_test(ExprPtr node) {
    auto e = make(ExprKind::Test, cur().line);
    next();  // 'is'
    e->negated = skip_name("not");
    e->name = parse_dotted_name();
    e->operands.push_back(std::move(node));
    const Token& t = cur();
    const bool argument_follows =
        t.type == TokenType::Name || t.type == TokenType::String || t.type == TokenType::Integer ||
        t.type == TokenType::Float || (t.type == TokenType::Operator && (t.value == "[" || t.value == "{"));
    if (at_op("(")) {
      parse_call_args(*e);
    } else if (argument_follows && !at_name("else") && !at_name("or") && !at_name("and")) {
      if (at_name("is")) fail("you cannot chain multiple tests with is");
      e->operands.push_back(parse_postfix(parse_primary()));
    }
    return finish(std::move(e));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

// Jinja2 rejects unknown filters and tests at compile time, except in "soft" contexts where
// the error waits until the filter or test is used: an `if` statement (its conditions and the
// statements directly in its branches, not the bodies of loops or macros in them) and any
// conditional expression.
void check_names(const Expr* e, bool soft) {
  if (!e) return;
  soft = soft || e->kind == ExprKind::Conditional;
  if (!soft && e->kind == ExprKind::Filter && !is_filter(e->name))
    syntax_error(e->line, "No filter named '" + e->name + "'.");
  if (!soft && e->kind == ExprKind::Test && !is_test(e->name))
    syntax_error(e->line, "No test named '" + e->name + "'.");
  for (const auto& op : e->operands) check_names(op.get(), soft);
  for (const auto& kw : e->keywords) check_names(kw.second.get(), soft);
}

void check_names(const Body& body, bool soft) {
  for (const auto& s : body) {
    if (s->kind == StmtKind::If) {
      for (const auto& c : s->conditions) check_names(c.get(), true);
      for (const auto& branch : s->branches) check_names(branch, true);
      continue;
    }
    // The statement's own expressions belong to the enclosing frame...
    check_names(s->expr.get(), soft);
    for (const auto& p : s->params) check_names(p.second.get(), soft && s->kind == StmtKind::With);
    // ...while loop, macro and block bodies get a fresh, strict one.
    check_names(s->loop_filter.get(), false);
    for (const auto& f : s->filters) check_names(f.get(), false);
    check_names(s->body, false);
    check_names(s->else_body, false);
  }
}

Body parse_template(std::string_view source, const Options& options) {
  Body body = Parser(tokenize(source, options)).parse();
  check_names(body, false);
  return body;
}

}  // namespace endless::jinja
