// A compact interpreter of the Jinja subset that chat templates use, rendering a model's
// `tokenizer.chat_template` the way Hugging Face's `apply_chat_template` does: Jinja2's
// ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loop controls, a
// `raise_exception` global, `strftime_now`, and `tojson` as json.dumps(ensure_ascii=False).
//
//   endless::jinja::Template tmpl(source);          // throws jinja::Exception on syntax errors
//   std::string prompt = tmpl.render(context);      // throws jinja::Exception on runtime errors
//
// Pass the context as nlohmann::ordered_json so dicts keep the key order the client sent
// (Python dicts do; `tool | tojson` shows it). A nlohmann::json converts implicitly, with its
// keys sorted. Keys left out of the context are undefined to the template (`tools is defined`
// is false); transformers itself passes `tools=None` and `documents=None` when a request has
// none, which some templates treat differently, so pass null to reproduce that exactly.
//
// Rendering is bounded so hostile templates fail instead of hanging: about two million loop
// iterations and calls (plus one per KiB of string copying), 64 MiB per string, and a few
// hundred levels of nesting; exceeding a bound raises jinja::Exception.
// A Template is immutable after construction; render() may run concurrently from many threads.
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace endless::jinja {

// Every error a template can cause: syntax errors at construction, and at render time
// undefined-variable errors, type errors and `raise_exception(message)`, whose what() is
// exactly the message the template passed.
class Exception : public endless::Error {
 public:
  using endless::Error::Error;
};

struct Options {
  // Remove the first newline after a block tag ({% ... %}) or comment.
  bool trim_blocks = true;
  // Strip spaces and tabs from the start of a line up to a block tag or comment.
  bool lstrip_blocks = true;
  // The local time `strftime_now(format)` formats; empty means the system clock.
  std::function<std::tm()> now;
};

namespace detail {
struct Program;
}

class Template {
 public:
  explicit Template(std::string_view source, Options options = {});
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  std::string render(const nlohmann::ordered_json& context) const;

 private:
  std::shared_ptr<const detail::Program> program_;
  Options options_;
};

}  // namespace endless::jinja
