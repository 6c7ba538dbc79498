// Parses template source into a statement tree, following Jinja2's grammar and operator
// precedence. Unknown filters and tests are rejected here, as Jinja2 does at compile time.
#pragma once

#include <string_view>

#include "jinja/ast.h"
#include "jinja/jinja.h"

namespace endless::jinja {

Body parse_template(std::string_view source, const Options& options);

}  // namespace endless::jinja
