// UTF-8 helpers giving template strings Python's code-point semantics: len(), indexing and
// slicing count code points, and strip()/split()/upper()/lower() use Python's notion of
// whitespace and case. Case mapping covers Latin, Greek, Cyrillic, Armenian and fullwidth
// Latin letters, which is what chat templates meet in practice.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace endless::jinja::unicode {

// Decodes UTF-8; invalid bytes decode as themselves (U+0080..U+00FF) so nothing is lost or thrown.
std::vector<char32_t> decode(std::string_view text);
void append_utf8(std::string& out, char32_t code_point);
std::string encode(const std::vector<char32_t>& code_points);

// Number of code points.
size_t length(std::string_view text);
bool is_ascii(std::string_view text);

// Python's str.isspace() for one code point.
bool is_space(char32_t c);
// Python's str.isprintable() for one code point (used by repr()).
bool is_printable(char32_t c);
bool is_cased(char32_t c);
bool is_upper(char32_t c);
bool is_lower(char32_t c);
bool is_alpha(char32_t c);
bool is_digit(char32_t c);

// Python's str.upper()/lower()/title()/capitalize()/swapcase().
std::string to_upper(std::string_view text);
std::string to_lower(std::string_view text);
std::string to_title(std::string_view text);
std::string capitalize(std::string_view text);
// Appends the upper/lower case mapping of one code point (some map to several).
void append_upper(std::string& out, char32_t c);
void append_title(std::string& out, char32_t c);
void append_lower(std::string& out, char32_t c);

// Python's str.strip()/lstrip()/rstrip() without arguments.
std::string_view strip(std::string_view text);
std::string_view lstrip(std::string_view text);
std::string_view rstrip(std::string_view text);
// With an explicit set of characters to strip.
std::string strip_chars(std::string_view text, std::string_view chars, bool left, bool right);

// Python's str.splitlines() (without keepends).
std::vector<std::string> split_lines(std::string_view text);

}  // namespace endless::jinja::unicode
