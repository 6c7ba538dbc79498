// Unit tests of the template language. The expected strings were produced by Python's Jinja2
// 3.1 configured as Hugging Face's apply_chat_template (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loopcontrols, tojson = json.dumps(ensure_ascii=False)).
#include "jinja/jinja.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace endless::jinja {
namespace {

const nlohmann::ordered_json& context() {
  static const auto parsed = nlohmann::ordered_json::parse(R"J({
    "name": "World", "n": 7, "f": 2.5, "nums": [3, 1, 2], "empty": [], "d": {"b": 2, "a": 1},
    "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
             {"role": "user", "content": "bye"}],
    "nothing": null, "yes": true, "text": "  padded \n", "uni": "Ünïcödé straße"})J");
  return parsed;
}

struct RenderCase {
  const char* source;
  const char* expected;
};

void expect_renders(const std::vector<RenderCase>& cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.source);
    try {
      EXPECT_EQ(Template(c.source).render(context()), c.expected);
    } catch (const Exception& e) {
      ADD_FAILURE() << "threw: " << e.what();
    }
  }
}

struct ErrorCase {
  const char* source;
  const char* message;
};

void expect_errors(const std::vector<ErrorCase>& cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.source);
    const Template tmpl(c.source);
    try {
      const std::string text = tmpl.render(context());
      ADD_FAILURE() << "rendered instead of failing: " << text;
    } catch (const Exception& e) {
      EXPECT_EQ(std::string(e.what()), c.message);
    }
  }
}

TEST(JinjaRender, WhitespaceControl) {
  expect_renders({
      {R"J({% for m in msgs %}
  {{ m.role }}
{% endfor %}
)J",
       R"J(  user
  assistant
  user
)J"},
      {R"J({% for m in msgs -%}
  {{ m.role }}
{%- endfor %})J",
       R"J(userassistantuser)J"},
      {R"J(  {% if yes %}
    yes
  {% endif %}
done)J",
       R"J(    yes
done)J"},
      {R"J(  {%+ if yes %}
    kept
  {%+ endif +%}
done)J",
       R"J(      kept
  
done)J"},
      {R"J({# comment #}
line
  {# indented comment #}
after)J",
       R"J(line
after)J"},
      {R"J({{- 'a' -}}   
   {{ 'b' }}  {{- 'c' }})J",
       R"J(abc)J"},
      {R"J(text   {%- if yes %} y {% endif -%}   
   end)J",
       R"J(text y end)J"},
      {R"J({% raw %}
  {{ not rendered }}
  {% endraw %}
after)J",
       R"J(
  {{ not rendered }}
after)J"},
      {R"J(a {{ n }}
b {#- c #}
d {#+ e +#}
f)J",
       R"J(a 7
bd 
f)J"},
      {R"J(x {% if yes -%}
	
   y
{%- endif %} z)J",
       R"J(x y z)J"},
      {R"J(one trailing newline is dropped
)J",
       R"J(one trailing newline is dropped)J"},
      {R"J(two trailing newlines keep one

)J",
       R"J(two trailing newlines keep one
)J"},
      {R"J(crlf
newlines
normalize
{% if yes %}
yes
{% endif %}
)J",
       R"J(crlf
newlines
normalize
yes
)J"},
      {R"J({% macro m() %}
  inside
{% endmacro %}
[{{ m() }}])J",
       R"J([  inside
])J"},
      {R"J(	{% if yes %}tab-indented tag{% endif %})J",
       R"J(tab-indented tag)J"},
      {R"J({{ 'a' }}
{{ 'b' }}
)J",
       R"J(a
b)J"},
  });
}

TEST(JinjaRender, Expressions) {
  expect_renders({
      {R"J({{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 7.5 // 2 }})J",
       R"J(7|9|3.5|3|-4|2|1024|0.5|3.0)J"},
      {R"J({{ 1.0 }}|{{ 1e16 }}|{{ 1e-5 }}|{{ 0.1 + 0.2 }}|{{ 100.0 / 3 }}|{{ -0.0 }}|{{ 1_000 }}|{{ 3.0e2 }})J",
       R"J(1.0|1e+16|1e-05|0.30000000000000004|33.333333333333336|-0.0|1000|300.0)J"},
      {R"J({{ 'a' ~ 1 ~ nothing ~ missing ~ [1] }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ (1, 2) + (3,) }}|{{ 'ab' * 3 }}|{{ 3 * [0] }})J",
       R"J(a1None[1]|ab|[1, 2]|(1, 2, 3)|ababab|[0, 0, 0])J"},
      {R"J({{ -n }}|{{ +n }}|{{ not n }}|{{ -f }}|{{ -n|abs }}|{{ 'x' + name|upper }}|{{ true + 1 }})J",
       R"J(-7|7|False|-2.5|7|xWORLD|2)J"},
      {R"J({{ 1 < 2 < 3 }}|{{ 1 < 3 < 2 }}|{{ 1 == 1.0 }}|{{ 'a' != 'b' }}|{{ [1, 2] < [1, 3] }}|{{ true == 1 }}|{{ nothing == none }}|{{ missing == missing }})J",
       R"J(True|False|True|True|True|True|True|True)J"},
      {R"J({{ 1 in nums }}|{{ 5 not in nums }}|{{ 'orl' in name }}|{{ 'a' in d }}|{{ 'z' in d }}|{{ 'x' in missing }})J",
       R"J(True|True|True|True|False|False)J"},
      {R"J({{ n and name }}|{{ 0 and name }}|{{ 0 or 'x' }}|{{ '' or nothing }}|{{ n if yes else 'no' }}|{{ n if nothing else 'no' }}|{{ 'yes' if false }}|)J",
       R"J(World|0|x|None|7|no||)J"},
      {R"J({{ 'it\'s' }}|{{ "say \"hi\"" }}|{{ 'tab\there' }}|{{ 'a\nb' }}|{{ '\u00e9\x41\101' }}|{{ 'adjacent' ' strings' }})J",
       R"J(it's|say "hi"|tab	here|a
b|éAA|adjacent strings)J"},
      {R"J({{ nums[0] }}|{{ nums[-1] }}|{{ nums[1:] }}|{{ nums[:-1] }}|{{ nums[::-1] }}|{{ name[0] }}|{{ name[-3:] }}|{{ name[::2] }}|{{ uni[1:4] }}|{{ nums.0 }})J",
       R"J(3|2|[1, 2]|[3, 1]|[2, 1, 3]|W|rld|Wrd|nïc|3)J"},
      {R"J({{ msgs[0].role }}|{{ msgs[0]['content'] }}|{{ msgs[1:]|length }}|{{ nums[10] }}|{{ d.missing }})J",
       R"J(user|hi|2||)J"},
      {R"J({{ {'a': 1, 'b': [1, 2]} }}|{{ [1, [2, [3]]] }}|{{ ('a',) }}|{{ () }}|{{ ["it's", 'say "hi"'] }}|{{ nothing }}|{{ yes }})J",
       R"J({'a': 1, 'b': [1, 2]}|[1, [2, [3]]]|('a',)|()|["it's", 'say "hi"']|None|True)J"},
      {R"J({{ d }}|{{ msgs[0] }}|{{ uni }}|{{ ['ü', '\n'] }})J",
       R"J({'b': 2, 'a': 1}|{'role': 'user', 'content': 'hi'}|Ünïcödé straße|['ü', '\n'])J"},
  });
}

TEST(JinjaRender, LoopsAndScopes) {
  expect_renders({
      {R"J({% for i in nums %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.cycle('a', 'b') }},{% endfor %})J",
       R"J(1032TrueFalse3a,2121FalseFalse3b,3210FalseTrue3a,)J"},
      {R"J({% for i in nums %}{% if not loop.first %}{{ loop.previtem }}{% endif %}>{{ i }}>{% if not loop.last %}{{ loop.nextitem }}{% endif %};{% endfor %})J",
       R"J(>3>1;3>1>2;1>2>;)J"},
      {R"J({% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d|dictsort %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %})J",
       R"J(b=2;a=1;|a=1;b=2;|ba)J"},
      {R"J({% for x in empty %}x{% else %}empty{% endfor %}|{% for x in nums if x > 1 %}{{ x }}@{{ loop.index }}/{{ loop.length }} {% endfor %})J",
       R"J(empty|3@1/2 2@2/2 )J"},
      {R"J({% for x in nums %}{% if x == 1 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for x in nums %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %})J",
       R"J(3|32)J"},
      {R"J({% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}|{% for (a, b) in [(1, 2)] %}{{ a }}{{ b }}{% endfor %}|{% for c in 'ab' %}{{ c }}{% endfor %}|{% for x in missing %}x{% endfor %})J",
       R"J(37|12|ab|)J"},
      {R"J({% for i in range(3) %}{% for j in range(2) %}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %})J",
       R"J(121;122;123;)J"},
      {R"J({% set x = 1 %}{% for i in nums %}{% set x = i %}{% endfor %}{{ x }}|{% if yes %}{% set y = 5 %}{% endif %}{{ y }}|{% set a, b = 1, 2 %}{{ a }}{{ b }})J",
       R"J(1|5|12)J"},
      {R"J({% set ns = namespace(total=0, seen=[]) %}{% for i in nums %}{% set ns.total = ns.total + i %}{% set ns.seen = ns.seen + [i] %}{% endfor %}{{ ns.total }} {{ ns.seen }})J",
       R"J(6 [3, 1, 2])J"},
      {R"J({% set ns = namespace() %}{% set ns.flag = true %}{{ ns.flag }}|{% set ns2 = namespace({'k': 5}, j=6) %}{{ ns2.k }}{{ ns2.j }})J",
       R"J(True|56)J"},
      {R"J({{ range(5)|list }}|{{ range(2, 8, 2)|list }}|{{ range(5, 0, -2)|list }}|{{ range(0)|list }}|{{ dict(a=1, b='x') }})J",
       R"J([0, 1, 2, 3, 4]|[2, 4, 6]|[5, 3, 1]|[]|{'a': 1, 'b': 'x'})J"},
      {R"J({% with p = 5, q = 6 %}{{ p * q }}{% endwith %}[{{ p }}])J",
       R"J(30[])J"},
  });
}

TEST(JinjaRender, MacrosAndBlocks) {
  expect_renders({
      {R"J({% macro m(a, b='B', c=none) %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(1, c=3) }}{{ m() }})J",
       R"J([1BNone][12None][1B3][BNone])J"},
      {R"J({% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, x=3) }})J",
       R"J((1, 2){'x': 3})J"},
      {R"J({% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }})J",
       R"J(54321)J"},
      {R"J({% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inner {{ name }}{% endcall %})J",
       R"J(<b>inner World</b>)J"},
      {R"J({% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) each(nums) %}({{ x }}){% endcall %})J",
       R"J((3)(1)(2))J"},
      {R"J({% set ns = namespace(n=0) %}{% macro bump() %}{% set ns.n = ns.n + 1 %}{% endmacro %}{{ bump() }}{{ bump() }}{{ ns.n }})J",
       R"J(2)J"},
      {R"J({% macro late() %}{{ later }}{% endmacro %}{% set later = 'seen' %}{{ late() }})J",
       R"J(seen)J"},
      {R"J({% filter upper %}shout {{ name }}{% endfilter %}|{% filter trim|upper %}  x  {% endfilter %})J",
       R"J(SHOUT WORLD|X)J"},
      {R"J({% set blk %} block {{ n }} {% endset %}[{{ blk }}]|{% set blk2 | trim %} block2 {% endset %}[{{ blk2 }}])J",
       R"J([ block 7 ]|[block2])J"},
      {R"J({% generation %}generated {{ n }}{% endgeneration %})J",
       R"J(generated 7)J"},
  });
}

TEST(JinjaRender, Filters) {
  expect_renders({
      {R"J({{ name|upper }}|{{ name|lower }}|{{ 'hello-world foo(bar'|title }}|{{ 'hELLO wORLD'|capitalize }}|{{ uni|upper }}|{{ uni|lower }})J",
       R"J(WORLD|world|Hello-World Foo(Bar|Hello world|ÜNÏCÖDÉ STRASSE|ünïcödé straße)J"},
      {R"J({{ name|length }}|{{ uni|length }}|{{ nums|length }}|{{ d|length }}|{{ empty|count }}|{{ missing|length }})J",
       R"J(5|14|3|2|0|0)J"},
      {R"J({{ nums|first }}|{{ nums|last }}|{{ name|first }}|{{ name|last }}|{{ empty|first }}|{{ d|first }})J",
       R"J(3|2|W|d||b)J"},
      {R"J({{ nums|join(',') }}|{{ nums|join }}|{{ msgs|join(', ', attribute='role') }})J",
       R"J(3,1,2|312|user, assistant, user)J"},
      {R"J({{ missing|default('dflt') }}|{{ nothing|default('x') }}|{{ nothing|default('x', true) }}|{{ ''|d('y', boolean=true) }})J",
       R"J(dflt|None|x|y)J"},
      {R"J({{ nums|string }}|{{ d|string }}|{{ nothing|string }}|{{ yes|string }}|{{ f|string }})J",
       R"J([3, 1, 2]|{'b': 2, 'a': 1}|None|True|2.5)J"},
      {R"J({{ '42'|int }}|{{ '42.9'|int }}|{{ 'x'|int }}|{{ 'x'|int(5) }}|{{ 3.9|int }}|{{ 'ff'|int(base=16) }}|{{ ' 12 '|int }})J",
       R"J(42|42|0|5|3|255|12)J"},
      {R"J({{ '2.5'|float }}|{{ 'x'|float }}|{{ 3|float }}|{{ '1e3'|float }})J",
       R"J(2.5|0.0|3.0|1000.0)J"},
      {R"J({{ d|items|list }}|{{ d|dictsort }}|{{ d|dictsort(reverse=true) }}|{{ {'x': 2, 'y': 1}|dictsort(by='value') }})J",
       R"J([('b', 2), ('a', 1)]|[('a', 1), ('b', 2)]|[('b', 2), ('a', 1)]|[('y', 1), ('x', 2)])J"},
      {R"J({{ 'a-b-c'|replace('-', '+') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'abc'|replace('', '-') }})J",
       R"J(a+b+c|bba|-a-b-c-)J"},
      {R"J({{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}|{{ msgs|rejectattr('role', 'eq', 'user')|list|length }})J",
       R"J(['hi', 'bye']|1)J"},
      {R"J({{ nums|select('odd')|list }}|{{ nums|reject('even')|list }}|{{ [0, 1, '', 'a', none]|select|list }}|{{ msgs|map(attribute='missing', default='?')|list }})J",
       R"J([3, 1]|[3, 1]|[1, 'a']|['?', '?', '?'])J"},
      {R"J({{ ['a', 'A', 'b', 'a']|unique|list }}|{{ ['a', 'A']|unique(case_sensitive=true)|list }}|{{ nums|map('string')|join('-') }})J",
       R"J(['a', 'b']|['a', 'A']|3-1-2)J"},
      {R"J({{ n|abs }}|{{ -2.5|abs }}|{{ 2.5|round }}|{{ 3.5|round }}|{{ 2.675|round(2) }}|{{ 7|round }}|{{ 1.55|round(1, 'floor') }}|{{ 1.51|round(1, 'ceil') }})J",
       R"J(7|2.5|2.0|4.0|2.67|7|1.5|1.6)J"},
      {R"J({{ nums|sum }}|{{ [1.5, 2.25]|sum }}|{{ nums|min }}|{{ nums|max }}|{{ ['b', 'A', 'a']|min }}|{{ ['b', 'A', 'a']|max(case_sensitive=true) }})J",
       R"J(6|3.75|1|3|A|b)J"},
      {R"J({{ nums|sort }}|{{ nums|sort(reverse=true) }}|{{ ['b', 'A', 'a', 'C']|sort }}|{{ msgs|sort(attribute='content')|map(attribute='content')|join }})J",
       R"J([1, 2, 3]|[3, 2, 1]|['A', 'a', 'b', 'C']|byehiyo)J"},
      {R"J({{ 'x\ny\n\nz'|indent }}|{{ 'x\ny'|indent(2, true) }}|{{ 'x\n\ny'|indent(2, blank=true) }}|{{ 'x\ny'|indent('> ') }})J",
       R"J(x
    y

    z|  x
  y|x
  
  y|x
> y)J"},
      {R"J({{ 'ab'|center(6) }}|{{ text|trim }}|{{ 'xxaxx'|trim('x') }}|{{ '<a&\'">'|e }}|{{ '<a>'|safe }})J",
       R"J(  ab  |padded|a|&lt;a&amp;&#39;&#34;&gt;|<a>)J"},
      {R"J({{ nums|reverse|list }}|{{ name|reverse }}|{{ name|list }}|{{ d|list }}|{{ 'a b  c'|wordcount }})J",
       R"J([2, 1, 3]|dlroW|['W', 'o', 'r', 'l', 'd']|['b', 'a']|3)J"},
      {R"J({{ '%s-%d'|format('x', 3) }}|{{ '%05.1f'|format(2.25) }}|{{ nums|batch(2)|list }}|{{ msgs[0]|attr('role') }})J",
       R"J(x-3|002.2|[[3, 1], [2]]|)J"},
  });
}

TEST(JinjaRender, Tests) {
  expect_renders({
      {R"J({{ n is odd }}|{{ n is even }}|{{ n is divisibleby 7 }}|{{ n is divisibleby(3) }}|{{ n is number }}|{{ f is float }}|{{ n is integer }}|{{ yes is boolean }}|{{ yes is true }}|{{ yes is false }})J",
       R"J(True|False|True|False|True|True|True|True|True|False)J"},
      {R"J({{ name is string }}|{{ d is mapping }}|{{ nums is iterable }}|{{ name is iterable }}|{{ n is iterable }}|{{ nums is sequence }}|{{ nothing is none }}|{{ range is callable }}|{{ name is callable }})J",
       R"J(True|True|True|True|False|True|True|True|False)J"},
      {R"J({{ missing is defined }}|{{ missing is undefined }}|{{ d.a is defined }}|{{ d.z is defined }}|{{ msgs[0].role is not none }})J",
       R"J(False|True|True|False|True)J"},
      {R"J({{ 'ab' is lower }}|{{ 'AB' is upper }}|{{ 3 is in nums }}|{{ n is eq 7 }}|{{ n is ne 7 }}|{{ n is lt 8 }}|{{ n is gt 8 }}|{{ n is ge 7 }}|{{ n is le 6 }}|{{ n is sameas 7 }}|{{ nothing is sameas none }})J",
       R"J(True|True|True|True|False|True|False|True|False|True|True)J"},
      {R"J({{ 'upper' is filter }}|{{ 'odd' is test }}|{{ d.items() is iterable }}|{{ 'a'|safe is escaped }})J",
       R"J(True|True|True|True)J"},
  });
}

TEST(JinjaRender, Methods) {
  expect_renders({
      {R"J({{ name.split() }}|{{ name.split('o') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ ' a b c '.rsplit(none, 1) }})J",
       R"J(['World']|['W', 'rld']|['a', 'b']|['a', 'b,c']|['a,b', 'c']|[' a b', 'c'])J"},
      {R"J({{ text.strip() }}|{{ text.lstrip() }}|{{ text.rstrip() }}|{{ 'xyhixy'.strip('xy') }}|{{ name.startswith('Wo') }}|{{ name.endswith(('x', 'ld')) }}|{{ name.startswith('rl', 2) }})J",
       R"J(padded|padded 
|  padded|hi|True|True|True)J"},
      {R"J({{ name.upper() }}|{{ name.lower() }}|{{ 'hello wORLD 3rd'.title() }}|{{ 'hELLO'.capitalize() }}|{{ name.replace('o', '0') }}|{{ 'aaa'.replace('a', 'b', 1) }})J",
       R"J(WORLD|world|Hello World 3Rd|Hello|W0rld|baa)J"},
      {R"J({{ name.find('o') }}|{{ name.rfind('l') }}|{{ uni.find('d') }}|{{ 'hello'.count('l') }}|{{ '-'.join(['a', 'b']) }})J",
       R"J(1|3|5|2|a-b)J"},
      {R"J({{ '{} and {}'.format(1, 'x') }}|{{ '{0}{name}'.format('a', name='b') }}|{{ '{:>5}|{:<4}|{:^5}|{:.2f}|{:03d}'.format('a', 'b', 'c', 3.14159, 7) }})J",
       R"J(1 and x|ab|    a|b   |  c  |3.14|007)J"},
      {R"J({{ '123'.isdigit() }}|{{ 'abc'.isalpha() }}|{{ 'ABC'.isupper() }}|{{ 'abc'.islower() }}|{{ '  '.isspace() }}|{{ 'ab12'.isalnum() }})J",
       R"J(True|True|True|True|True|True)J"},
      {R"J({{ 'ab'.ljust(4) }}.|{{ 'ab'.rjust(4, '*') }}|{{ '-42'.zfill(5) }}|{{ 'a=b=c'.partition('=') }}|{{ 'a=b=c'.rpartition('=') }}|{{ 'prefix-x'.removeprefix('prefix-') }})J",
       R"J(ab  .|**ab|-0042|('a', '=', 'b=c')|('a=b', '=', 'c')|x)J"},
      {R"J({{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 9) }}|{{ d.keys()|list }}|{{ d.values()|list }}|{{ d.items()|list }}|{{ nums.index(2) }}|{{ nums.count(3) }})J",
       R"J(1|None|9|['b', 'a']|[2, 1]|[('b', 2), ('a', 1)]|2|1)J"},
  });
}

TEST(JinjaRender, Json) {
  expect_renders({
      {R"J({{ d|tojson }}|{{ msgs[0]|tojson }}|{{ d|tojson(sort_keys=true) }}|{{ uni|tojson }}|{{ [1.5, 2.0, -0.1, 1e20]|tojson }}|{{ nothing|tojson }}|{{ yes|tojson }})J",
       R"J({"b": 2, "a": 1}|{"role": "user", "content": "hi"}|{"a": 1, "b": 2}|"Ünïcödé straße"|[1.5, 2.0, -0.1, 1e+20]|null|true)J"},
      {R"J({{ msgs[0]|tojson(indent=2) }}|{{ {'a': [], 'b': {}, 'c': [1]}|tojson(indent=1) }}|{{ d|tojson(separators=(',', ':')) }}|{{ 'é'|tojson(ensure_ascii=true) }})J",
       R"J({
  "role": "user",
  "content": "hi"
}|{
 "a": [],
 "b": {},
 "c": [
  1
 ]
}|{"b":2,"a":1}|"\u00e9")J"},
      {R"J({{ 'quote" backslash\\ newline\n tab\t ctrl\u0001'|tojson }})J",
       R"J("quote\" backslash\\ newline\n tab\t ctrl\u0001")J"},
      {R"J({{ ('a', 1)|tojson }}|{{ '<b>&'|tojson }})J",
       R"J(["a", 1]|"<b>&")J"},
  });
}

TEST(JinjaRender, MarkupAndGenerators) {
  expect_renders({
      {R"J({{ '<i>'|safe + '<u>' }}|{{ '<i>' + '<u>'|safe }}|{{ ('%s<'|safe) % '<' }}|{{ 'x' ~ ('<b>'|safe) }}|{{ '<x>'|safe|upper }}|{{ ['<'|safe] }}|{{ '<'|e|e }})J",
       R"J(<i>&lt;u&gt;|&lt;i&gt;<u>|&lt;<|x<b>|<X>|[Markup('<')]|&lt;)J"},
      {R"J({% set g = nums|select('odd') %}{{ g|list }}{{ g|list }}|{% if empty|select %}generators are true{% endif %}|{{ d.items()|length }})J",
       R"J([3, 1][]|generators are true|2)J"},
  });
}

TEST(JinjaRender, RuntimeErrorsNameTheProblem) {
  expect_errors({
      {R"J({{ missing.attr }})J", R"J('missing' is undefined)J"},
      {R"J({{ msgs[0].missing.attr }})J", R"J('dict object' has no attribute 'missing')J"},
      {R"J({{ msgs[5].role }})J", R"J(list object has no element 5)J"},
      {R"J({{ missing + 1 }})J", R"J('missing' is undefined)J"},
      {R"J({{ 'a' + 1 }})J", R"J(can only concatenate str (not "int") to str)J"},
      {R"J({{ 1 + 'a' }})J", R"J(unsupported operand type(s) for +: 'int' and 'str')J"},
      {R"J({{ nums.append(1) }})J", R"J(access to attribute 'append' of 'list' object is unsafe.)J"},
      {R"J({{ d.update({}) }})J", R"J(access to attribute 'update' of 'dict' object is unsafe.)J"},
      {R"J({{ 1 / 0 }})J", R"J(division by zero)J"},
      {R"J({{ 1 // 0 }})J", R"J(integer division or modulo by zero)J"},
      {R"J({{ 'a' < 1 }})J", R"J('<' not supported between instances of 'str' and 'int')J"},
      {R"J({{ range(100001)|length }})J", R"J(Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).)J"},
      {R"J({{ name() }})J", R"J('str' object is not callable)J"},
      {R"J({{ missing() }})J", R"J('missing' is undefined)J"},
      {R"J({% set name.attr = 1 %})J", R"J(cannot assign attribute on non-namespace object)J"},
      {R"J({% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }})J", R"J(macro 'm' takes not more than 1 argument(s))J"},
      {R"J({% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }})J", R"J(macro 'm' takes no keyword argument 'b')J"},
      {R"J({% for a, b in [[1, 2, 3]] %}{% endfor %})J", R"J(too many values to unpack (expected 2))J"},
      {R"J({% for a, b in [[1]] %}{% endfor %})J", R"J(not enough values to unpack (expected 2, got 1))J"},
      {R"J({{ raise_exception('custom ' ~ n) }})J", R"J(custom 7)J"},
      {R"J({{ nums|map(attribute='x')|tojson }})J", R"J(Object of type generator is not JSON serializable)J"},
      {R"J({{ (nums|select)|last }})J", R"J('generator' object is not reversible)J"},
      {R"J({{ [nums|select]|tojson }})J", R"J(Object of type generator is not JSON serializable)J"},
      {R"J({% for x in nothing %}{% endfor %})J", R"J('NoneType' object is not iterable)J"},
      {R"J({{ 5 in 5 }})J", R"J(argument of type 'int' is not iterable)J"},
      {R"J({{ nothing.attr.deeper }})J", R"J('None' has no attribute 'attr')J"},
      {R"J({{ missing|int }})J", R"J('missing' is undefined)J"},
      {R"J({{ [1, 2] in d }})J", R"J(unhashable type: 'list')J"},
  });
}

TEST(JinjaRender, PythonQuirksFoundByDifferentialTesting) {
  expect_renders({
      {R"J({% if 5|select %}generators are true before they run{% endif %}|{{ 'abc' % missing }}|{{ 'a%s' % [1] }})J",
       R"J(generators are true before they run|abc|a[1])J"},
      {R"J({% for x in nums: %}{{ x }}{% else: %}none{% endfor %}|{% if yes: %}colon{% endif %})J",
       R"J(312|colon)J"},
      {R"J({{ d[] }}|{% macro m(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ m(*[1, 2]) }}{{ m(**{'a': 3, 'b': 4}) }})J",
       R"J(|1234)J"},
      {R"J({% set ns = namespace(a=0) %}{% set x, ns.a = 1, 2 %}{{ x }}{{ ns.a }}|{% for a, b in d|dictsort %}{{ a }}{% endfor %})J",
       R"J(12|ab)J"},
      {R"J({% if name %}{{ name|no_such_filter_in_soft_context if false else 'soft' }}{% endif %}|{{ nums|map('string')|join(',') }})J",
       R"J(soft|3,1,2)J"},
      {R"J(trailing comment opener{#)J",
       R"J(trailing comment opener)J"},
  });
  expect_errors({
      {R"J({{ (5|select)|list }})J", R"J('int' object is not iterable)J"},
      {R"J({{ 5|indent }})J", R"J(unsupported operand type(s) for +=: 'int' and 'str')J"},
      {R"J({{ nums|indent }})J", R"J('list' object has no attribute 'splitlines')J"},
      {R"J({{ true|dictsort }})J", R"J('bool' object has no attribute 'items')J"},
      {R"J({% if name %}{{ name|no_such_filter }}{% endif %})J", R"J(No filter named 'no_such_filter' found.)J"},
      {R"J({{ 7 % 0 }})J", R"J(integer modulo by zero)J"},
      {R"J({{ 7.0 / 0 }})J", R"J(float division by zero)J"},
      {R"J({{ 5|reverse }})J", R"J(argument must be iterable)J"},
      {R"J({{ 5|last }})J", R"J('int' object is not reversible)J"},
      {R"J({{ name.count(1) }})J", R"J(must be str, not int)J"},
      {R"J({{ (nums|items)|list }})J", R"J(Can only get item pairs from a mapping.)J"},
      {R"J({% set ns = namespace(missing) %})J", R"J('missing' is undefined)J"},
  });
}

TEST(JinjaOptions, TrimAndLstripBlocksCanBeTurnedOff) {
  const char* source = "<ul>\n  {% for m in items %}\n  <li>{{ m }}</li>\n  {% endfor %}\n  {# note #}\n</ul>";
  const nlohmann::ordered_json items = {{"items", {"a", "b"}}};
  auto render_with = [&](bool trim, bool lstrip) {
    Options options;
    options.trim_blocks = trim;
    options.lstrip_blocks = lstrip;
    return Template(source, options).render(items);
  };
  EXPECT_EQ(render_with(false, false), "<ul>\n  \n  <li>a</li>\n  \n  <li>b</li>\n  \n  \n</ul>");
  EXPECT_EQ(render_with(true, false), "<ul>\n    <li>a</li>\n    <li>b</li>\n    </ul>");
  EXPECT_EQ(render_with(false, true), "<ul>\n\n  <li>a</li>\n\n  <li>b</li>\n\n\n</ul>");
  EXPECT_EQ(render_with(true, true), "<ul>\n  <li>a</li>\n  <li>b</li>\n</ul>");
}

TEST(JinjaOptions, StrftimeNowFormatsTheConfiguredClock) {
  Options options;
  options.now = [] {
    std::tm tm{};
    tm.tm_year = 2026 - 1900;
    tm.tm_mon = 10;
    tm.tm_mday = 28;
    tm.tm_hour = 9;
    tm.tm_min = 5;
    return tm;
  };
  const Template tmpl("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%H:%M') }}|{{ strftime_now is defined }}",
                      options);
  EXPECT_EQ(tmpl.render({}), "28 Nov 2026|09:05|True");
  // Without a configured clock it formats the local time: a 4-digit year at least.
  EXPECT_EQ(Template("{{ strftime_now('%Y')|length }}").render({}), "4");
}

TEST(JinjaApi, DictsKeepTheKeyOrderOfTheContext) {
  const auto ordered = nlohmann::ordered_json::parse(R"({"tool": {"name": "f", "description": "d", "arguments": {"z": 1, "a": 2}}})");
  EXPECT_EQ(Template("{{ tool|tojson }}").render(ordered),
            R"({"name": "f", "description": "d", "arguments": {"z": 1, "a": 2}})");
  // A plain nlohmann::json converts implicitly; its keys come sorted.
  const auto sorted = nlohmann::json::parse(R"({"tool": {"name": "f", "arguments": 1}})");
  EXPECT_EQ(Template("{{ tool|tojson }}").render(sorted), R"({"arguments": 1, "name": "f"})");
}

TEST(JinjaApi, ContextVariablesShadowGlobalsAndRenderingIsRepeatable) {
  const Template tmpl("{{ range }}{% set range = 1 %}{{ range }}");
  EXPECT_EQ(tmpl.render({{"range", "ctx"}}), "ctx1");
  EXPECT_EQ(tmpl.render({{"range", "again"}}), "again1");
  EXPECT_THROW(tmpl.render(nlohmann::ordered_json::array()), Exception);
}

TEST(JinjaApi, TemplatesRenderConcurrently) {
  const Template tmpl("{% for i in range(200) %}{{ i }},{% endfor %}{{ n }}");
  std::string expected;
  for (int i = 0; i < 200; ++i) expected += std::to_string(i) + ",";
  std::vector<std::thread> threads;
  std::vector<std::string> results(4);
  for (size_t t = 0; t < results.size(); ++t)
    threads.emplace_back([&, t] { results[t] = tmpl.render({{"n", t}}); });
  for (auto& thread : threads) thread.join();
  for (size_t t = 0; t < results.size(); ++t) EXPECT_EQ(results[t], expected + std::to_string(t));
}

TEST(JinjaApi, RaiseExceptionMessageIsTheWhat) {
  const Template tmpl("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok");
  EXPECT_EQ(tmpl.render({{"messages", {{{"role", "user"}}}}}), "ok");
  try {
    tmpl.render({{"messages", {{{"role", "system"}}}}});
    FAIL() << "expected raise_exception to throw";
  } catch (const Exception& e) {
    EXPECT_STREQ(e.what(), "System role not supported");
  }
  // jinja::Exception is an endless::Error, so callers at the edge handle it like any user error.
  EXPECT_THROW(tmpl.render({{"messages", {{{"role", "system"}}}}}), endless::Error);
}

TEST(JinjaErrors, MalformedTemplatesFailAtConstruction) {
  const char* malformed[] = {
      "{{ 'unterminated",
      "{% if x %}no end",
      "{% for %}{% endfor %}",
      "{% for x in %}{% endfor %}",
      "{{ x | nofilter }}",
      "{{ x is notatest }}",
      "{% endif %}",
      "{{ }}",
      "{{ x }",
      "{{ x",
      "{% if x",
      "{% set = 1 %}",
      "{{ (1, 2 }}",
      "{{ [1, 2) }}",
      "{{ 1 +* 2 }}",
      "{% foo %}",
      "{% macro m(a=1, b) %}{% endmacro %}",
      "{% break %}",
      "{% for x in y %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}",
      "{# unclosed comment",
      "{% raw %}unclosed raw",
      "{% if x %}{% else %}{% else %}{% endif %}",
      "{% for x in y %}{% endif %}",
      "{% set x %}unclosed set",
      "{% call m() %}unclosed call",
      "{% include 'other.jinja' %}",
      "{% extends 'base' %}",
      "{% do x.append(1) %}",
      "{% for x in y recursive %}{% endfor %}",
      "{{ 99999999999999999999 }}",
      "{{ '\\N{BULLET}' }}",
      "{{ x.1a }}",
      "{{ a ! b }}",
      "{% set true = 1 %}",
      "{{ f(a=1, 2) }}",
      "{{ x is }}",
      "{{ {1: 2 }}",
      "{% endfor %}",
      "{%",
      "{{",
      "{{ 'a' }}}}{%",
  };
  for (const char* source : malformed) {
    SCOPED_TRACE(source);
    EXPECT_THROW(Template{source}, Exception);
  }
}

TEST(JinjaErrors, SyntaxErrorsGiveTheLine) {
  try {
    Template("line 1\n{{ ok }}\n{{ bad bad }}");
    FAIL() << "expected a syntax error";
  } catch (const Exception& e) {
    EXPECT_EQ(std::string(e.what()), "template syntax error at line 3: expected end of print statement, got 'bad'");
  }
}

TEST(JinjaLimits, DeepNestingIsAnErrorNotACrash) {
  EXPECT_THROW(Template("{{ " + std::string(100000, '(') + "1"), Exception);
  EXPECT_THROW(Template("{{ " + std::string(100000, '[') + " }}"), Exception);
  EXPECT_THROW(Template("{{ " + std::string(50000, '-') + "1 }}"), Exception);
  std::string nots = "{{ ";
  for (int i = 0; i < 50000; ++i) nots += "not ";
  EXPECT_THROW(Template(nots + "x }}"), Exception);
  std::string ifs;
  for (int i = 0; i < 20000; ++i) ifs += "{% if x %}";
  EXPECT_THROW(Template{ifs}, Exception);
  // Long flat chains nest the tree just as deeply.
  std::string sum = "{{ 1";
  for (int i = 0; i < 100000; ++i) sum += " + 1";
  EXPECT_THROW(Template(sum + " }}"), Exception);
  std::string filters = "{{ x";
  for (int i = 0; i < 100000; ++i) filters += "|trim";
  EXPECT_THROW(Template(filters + " }}"), Exception);
  // Moderate nesting is fine.
  EXPECT_EQ(Template("{{ " + std::string(50, '(') + "1" + std::string(50, ')') + " }}").render({}), "1");
}

TEST(JinjaLimits, RunawayTemplatesStopWithAnError) {
  // Unbounded recursion.
  EXPECT_THROW(Template("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").render({}), Exception);
  // Too many iterations: 10^15 without the limit.
  EXPECT_THROW(
      Template("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
               "{% endfor %}{% endfor %}{% endfor %}")
          .render({}),
      Exception);
  // Memory bombs.
  EXPECT_THROW(Template("{{ 'x' * 10000000000 }}").render({}), Exception);
  EXPECT_THROW(Template("{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(100) %}"
                        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}")
                   .render({}),
               Exception);
  EXPECT_THROW(Template("{{ 2 ** 100 }}").render({}), Exception);
  // Deeply nested data, from the context or built by the template.
  std::string deep = "{\"x\": ";
  for (int i = 0; i < 100000; ++i) deep += "[";
  for (int i = 0; i < 100000; ++i) deep += "]";
  deep += "}";
  EXPECT_THROW(Template("{{ x }}").render(nlohmann::ordered_json::parse(deep)), Exception);
  EXPECT_THROW(Template("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}"
                        "{% endfor %}{{ ns.x|length }}")
                   .render({}),
               Exception);
  // A namespace that contains itself prints without recursing forever.
  EXPECT_THROW(Template("{% set ns = namespace() %}{% set ns.self = [ns] %}{{ ns }}").render({}), Exception);
}

}  // namespace
}  // namespace endless::jinja
