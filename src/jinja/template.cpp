#include "jinja/interpreter.h"
#include "jinja/jinja.h"
#include "jinja/parser.h"

namespace endless::jinja {

Template::Template(std::string_view source, Options options) : options_(std::move(options)) {
  auto program = std::make_shared<detail::Program>();
  program->body = parse_template(source, options_);
  program_ = std::move(program);
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& context) const {
  Interpreter interpreter(options_);
  return interpreter.render(program_->body, context);
}

}  // namespace endless::jinja
