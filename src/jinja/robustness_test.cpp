// Hostile and broken templates must end in a jinja::Exception or a rendering, never in a crash,
// a hang or another exception type. Mutates a corpus of real-world-like templates (and the
// shared chat templates when present) deterministically and renders every mutant.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "jinja/jinja.h"
#include "test_support.h"

namespace endless::jinja {
namespace {

const char* const kCorpus[] = {
    R"J({%- set ns = namespace(found=false) -%}
{%- for message in messages -%}
  {%- if message['role'] == 'system' and not ns.found -%}{%- set ns.found = true -%}{{ message.content|trim }}{%- endif -%}
  {%- if message.role not in ['system', 'user', 'assistant', 'tool'] -%}{{ raise_exception('unknown role') }}{%- endif -%}
  <|{{ message.role }}|>{{ message['content'] }}{% if not loop.last %}\n{% endif %}
{%- endfor -%}
{%- if add_generation_prompt %}<|assistant|>{% endif -%})J",
    R"J({% macro render_tool(t, depth=0) -%}
{{ t.function.name ~ '(' }}{% for k, v in t.function.parameters.properties|dictsort %}{{ k }}: {{ v.type|default('any') }}{{ ', ' if not loop.last }}{% endfor %})
{%- if caller is defined %}{{ caller(depth) }}{% endif %}
{%- endmacro %}
{%- for t in tools if t.type == 'function' %}{{ render_tool(t) }}{{ t|tojson(indent=2) }}{% else %}no tools{% endfor %}
{% call(x) render_tool(tools[0]) %}{{ x }}{% endcall %}{% raw %}{{ kept }}{% endraw %}{# comment #})J",
    R"J({{ bos_token }}{% for m in messages %}{% set content = m.content if m.content is string else m.content|map(attribute='text')|join %}
{%- if '</think>' in content %}{% set content = content.split('</think>')[-1].lstrip() %}{% endif %}
[{{ m.role|upper }}] {{ content[:100]|replace('\n', ' ') }} {{ m.tool_calls|default([])|length }}
{%- endfor %}{{ (messages|selectattr('role', 'equalto', 'user')|list|last).content|e }})J",
};

std::vector<std::string> corpus() {
  std::vector<std::string> sources(std::begin(kCorpus), std::end(kCorpus));
  const auto dir = endless::testing::shared_file("templates");
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".jinja") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    sources.push_back(text.str());
  }
  return sources;
}

const char* const kFragments[] = {
    "{{", "}}", "{%", "%}", "{#", "#}", "-", "+", "(", ")", "[", "]", "{", "}", "|", ".", ",", "'", "\"", "\\",
    " if ", " for ", " endfor ", " endif ", " else ", " not ", " in ", " is ", "loop", "loop.index", "x", "1",
    "\n", " ", "~", "*", "**", "set ", "macro ", "endmacro", "raw", "endraw", ":", "=", "ns.", "caller()",
    "range(99999)", "é", "\xff", "|trim", "|tojson", "|length", "|first", "|items", "[0]", "[-1]", "[1:]",
    ".role", " is defined", " and ", " or ", "none", "'str'", "messages", "tools", "recursive", "break",
};

TEST(JinjaRobustness, MutatedTemplatesNeverCrash) {
  const auto context = nlohmann::ordered_json::parse(R"J({
    "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi </think> x"},
                 {"role": "assistant", "content": "yo", "tool_calls": [{"id": "abcdefghi", "type": "function",
                  "function": {"name": "f", "arguments": {"a": 1}}}]},
                 {"role": "tool", "content": "r", "tool_call_id": "abcdefghi"}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
               "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})J");
  const auto sources = corpus();
  std::mt19937 rng(12345);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  int rendered = 0, failed = 0;
  for (int round = 0; round < 600; ++round) {
    std::string source = sources[pick(sources.size())];
    const int edits = 1 + static_cast<int>(pick(6));
    for (int e = 0; e < edits; ++e) {
      const size_t at = pick(source.size() + 1);
      switch (pick(4)) {
        case 0:
          source.insert(at, kFragments[pick(std::size(kFragments))]);
          break;
        case 1:
          source.erase(at, 1 + pick(20));
          break;
        case 2: {
          const size_t from = pick(source.size() + 1);
          source.insert(at, source.substr(from, 1 + pick(40)));
          break;
        }
        default:
          source.resize(at);
      }
    }
    try {
      const Template tmpl(source);
      tmpl.render(context);
      ++rendered;
    } catch (const Exception&) {
      ++failed;
    }
  }
  // Both outcomes occur, so the mutations exercise the error paths and the rendering paths.
  EXPECT_GT(rendered, 0);
  EXPECT_GT(failed, 0);
}

}  // namespace
}  // namespace endless::jinja
