// Splits template source into text and tag tokens, applying Jinja2's whitespace control
// ({%- -%} {{- -}} {%+ +%}, trim_blocks, lstrip_blocks) so the parser sees final text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "jinja/jinja.h"

namespace endless::jinja {

enum class TokenType {
  Text,
  VariableBegin,  // {{
  VariableEnd,    // }}
  BlockBegin,     // {%
  BlockEnd,       // %}
  Name,
  String,   // value holds the decoded string
  Integer,  // value holds the digits, underscores removed
  Float,
  Operator,
  End,
};

struct Token {
  TokenType type;
  std::string value;
  int line = 1;
};

std::vector<Token> tokenize(std::string_view source, const Options& options);

// A syntax error at a line of the template.
[[noreturn]] void syntax_error(int line, const std::string& message);

}  // namespace endless::jinja
