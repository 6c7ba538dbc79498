#include "jinja/lexer.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include "jinja/unicode.h"

namespace endless::jinja {

void syntax_error(int line, const std::string& message) {
  throw Exception(cat("template syntax error at line ", line, ": ", message));
}

namespace {

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Operators, longest first so that "//" wins over "/".
constexpr std::array<std::string_view, 26> kOperators = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
    "{",  "}",  "<",  ">",  "=",  ".",  ":", "|", ",", ";"};

// Jinja2 normalizes template newlines to "\n" and drops one trailing newline
// (keep_trailing_newline=False).
std::string normalize_newlines(std::string_view raw) {
  std::string src;
  src.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      src.push_back('\n');
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      src.push_back(raw[i]);
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return src;
}

// Decodes the escapes Python's "unicode-escape" codec understands.
std::string decode_string(std::string_view body, int line) {
  std::string out;
  out.reserve(body.size());
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    const char e = body[++i];
    auto hex = [&](size_t digits) {
      if (i + digits >= body.size()) syntax_error(line, "truncated \\x/\\u escape in string");
      uint32_t v = 0;
      for (size_t k = 1; k <= digits; ++k) {
        const char h = body[i + k];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
        else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
        else syntax_error(line, "truncated \\x/\\u escape in string");
      }
      i += digits;
      if (v > 0x10FFFF) syntax_error(line, "illegal Unicode character in string");
      unicode::append_utf8(out, v);
    };
    switch (e) {
      case '\n': break;  // line continuation
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      case 'N': syntax_error(line, "\\N{...} escapes are not supported");
      default:
        if (static_cast<unsigned char>(e) >= 0x80) {
          // Jinja2 escapes non-ASCII characters before decoding, so "\\é" reads as "\\xe9".
          size_t len = 1;
          while (i + len < body.size() && (static_cast<unsigned char>(body[i + len]) & 0xC0) == 0x80) ++len;
          const char32_t c = unicode::decode(body.substr(i, len)).at(0);
          char buf[16];
          if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
          else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          else std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
          out += buf;
          i += len - 1;
        } else if (e >= '0' && e <= '7') {
          uint32_t v = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
            v = v * 8 + static_cast<uint32_t>(body[++i] - '0');
          unicode::append_utf8(out, v);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const Options& options) : src_(std::move(source)), options_(options) {}

  std::vector<Token> run() {
    bool line_starting = true;  // the previous match ended a line (or nothing was matched yet)
    while (pos_ < src_.size()) {
      const size_t tag = find_tag(pos_);
      if (tag == std::string::npos) {
        emit_text(src_.substr(pos_));
        advance(src_.size());
        break;
      }
      std::string text = src_.substr(pos_, tag - pos_);
      const char kind = src_[tag + 1];
      size_t p = tag + 2;
      const char sign = (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ? src_[p] : 0;
      if (sign) ++p;

      size_t raw_body = std::string::npos;
      if (kind == '%') raw_body = match_raw_begin(p);

      if (sign == '-') {
        text = std::string(unicode::rstrip(text));
      } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
        text = lstrip_line(text, line_starting);
      }
      emit_text(text);
      advance(tag);
      const int tag_line = line_;

      if (kind == '#' && p >= src_.size()) {
        // Jinja2 stops lexing at the end of input right after a comment opener: no error.
        advance(src_.size());
        break;
      }
      if (kind == '#') {
        size_t end = src_.find("#}", p);
        if (end == std::string::npos) syntax_error(tag_line, "Missing end of comment tag");
        const char end_sign = (end > p && (src_[end - 1] == '-' || src_[end - 1] == '+')) ? src_[end - 1] : 0;
        finish_tag(end + 2, end_sign);
      } else if (raw_body != std::string::npos) {
        lex_raw(raw_body, tag_line);
      } else {
        lex_tag(kind, p, tag_line);
      }
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    tokens_.push_back({TokenType::End, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    size_t i = src_.find('{', from);
    while (i != std::string::npos && i + 1 < src_.size()) {
      const char next = src_[i + 1];
      if (next == '{' || next == '%' || next == '#') return i;
      i = src_.find('{', i + 1);
    }
    return std::string::npos;
  }

  // lstrip_blocks: drop spaces and tabs between the last line start and the tag.
  static std::string lstrip_line(const std::string& text, bool line_starting) {
    const size_t newline = text.rfind('\n');
    const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    if (line_start == 0 && !line_starting) return text;
    for (size_t i = line_start; i < text.size(); ++i)
      if (text[i] != ' ' && text[i] != '\t') return text;
    return text.substr(0, line_start);
  }

  void emit_text(const std::string& text) {
    if (!text.empty()) tokens_.push_back({TokenType::Text, text, line_});
  }

  void advance(size_t to) {
    line_ += static_cast<int>(std::count(src_.begin() + static_cast<std::ptrdiff_t>(pos_),
                                         src_.begin() + static_cast<std::ptrdiff_t>(to), '\n'));
    pos_ = to;
  }

  size_t skip_spaces(size_t p) const {
    while (p < src_.size() && is_ascii_space(src_[p])) ++p;
    return p;
  }

  // Whitespace after a tag end: "-" eats all of it, "+" none, otherwise trim_blocks eats one
  // newline (block tags and comments only).
  void finish_tag(size_t after, char end_sign, bool trim = true) {
    if (end_sign == '-') {
      const std::string_view rest(src_.data() + after, src_.size() - after);
      after = src_.size() - unicode::lstrip(rest).size();
    } else if (end_sign != '+' && trim && options_.trim_blocks && after < src_.size() &&
               src_[after] == '\n') {
      ++after;
    }
    advance(after);
  }

  // `{% raw %}`: returns where the raw body starts, or npos when the tag is not raw.
  size_t match_raw_begin(size_t p) const {
    p = skip_spaces(p);
    if (src_.compare(p, 3, "raw") != 0) return std::string::npos;
    p = skip_spaces(p + 3);
    if (src_.compare(p, 3, "-%}") == 0) {
      const std::string_view rest(src_.data() + p + 3, src_.size() - p - 3);
      return src_.size() - unicode::lstrip(rest).size();
    }
    if (src_.compare(p, 2, "%}") == 0) return p + 2;  // no trim_blocks after raw
    return std::string::npos;
  }

  void lex_raw(size_t body, int line) {
    size_t search = body;
    while (true) {
      const size_t open = src_.find("{%", search);
      if (open == std::string::npos) syntax_error(line, "missing end of raw directive");
      size_t p = open + 2;
      const char sign = (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ? src_[p] : 0;
      if (sign) ++p;
      p = skip_spaces(p);
      if (src_.compare(p, 6, "endraw") != 0) {
        search = open + 2;
        continue;
      }
      p = skip_spaces(p + 6);
      char end_sign = 0;
      size_t after;
      if (src_.compare(p, 3, "+%}") == 0 || src_.compare(p, 3, "-%}") == 0) {
        end_sign = src_[p];
        after = p + 3;
      } else if (src_.compare(p, 2, "%}") == 0) {
        after = p + 2;
      } else {
        search = open + 2;
        continue;
      }
      std::string text = src_.substr(body, open - body);
      const bool line_starting = body > 0 && src_[body - 1] == '\n';
      if (sign == '-') text = std::string(unicode::rstrip(text));
      else if (sign != '+' && options_.lstrip_blocks) text = lstrip_line(text, line_starting);
      advance(body);
      emit_text(text);
      advance(open);
      finish_tag(after, end_sign);
      return;
    }
  }

  void lex_tag(char kind, size_t p, int line) {
    const bool block = kind == '%';
    tokens_.push_back({block ? TokenType::BlockBegin : TokenType::VariableBegin, "", line});
    advance(p);
    std::vector<char> brackets;
    while (true) {
      advance(skip_spaces(pos_));
      if (pos_ >= src_.size())
        syntax_error(line_, block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
      if (brackets.empty()) {
        if (block) {
          if (src_.compare(pos_, 3, "-%}") == 0 || src_.compare(pos_, 3, "+%}") == 0) {
            const char end_sign = src_[pos_];
            tokens_.push_back({TokenType::BlockEnd, "", line_});
            finish_tag(pos_ + 3, end_sign);
            return;
          }
          if (src_.compare(pos_, 2, "%}") == 0) {
            tokens_.push_back({TokenType::BlockEnd, "", line_});
            finish_tag(pos_ + 2, 0);
            return;
          }
        } else {
          if (src_.compare(pos_, 3, "-}}") == 0) {
            tokens_.push_back({TokenType::VariableEnd, "", line_});
            finish_tag(pos_ + 3, '-');
            return;
          }
          if (src_.compare(pos_, 2, "}}") == 0) {
            tokens_.push_back({TokenType::VariableEnd, "", line_});
            finish_tag(pos_ + 2, 0, false);
            return;
          }
        }
      }
      lex_expression_token(brackets);
    }
  }

  void lex_expression_token(std::vector<char>& brackets) {
    const char c = src_[pos_];
    if (is_digit(c)) return lex_number();
    if (is_name_start(c) || unicode_name_length(pos_, true)) {
      size_t end = pos_;
      while (end < src_.size()) {
        if (is_name_char(src_[end])) ++end;
        else if (size_t len = unicode_name_length(end, false)) end += len;
        else break;
      }
      tokens_.push_back({TokenType::Name, src_.substr(pos_, end - pos_), line_});
      advance(end);
      return;
    }
    if (c == '\'' || c == '"') {
      size_t end = pos_ + 1;
      while (end < src_.size() && src_[end] != c) end += (src_[end] == '\\') ? 2 : 1;
      if (end >= src_.size()) syntax_error(line_, "unterminated string literal");
      const int line = line_;
      tokens_.push_back({TokenType::String, decode_string(std::string_view(src_).substr(pos_ + 1, end - pos_ - 1), line), line});
      advance(end + 1);
      return;
    }
    for (std::string_view op : kOperators) {
      if (src_.compare(pos_, op.size(), op) != 0) continue;
      if (op == "(" || op == "[" || op == "{") {
        brackets.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
      } else if (op == ")" || op == "]" || op == "}") {
        if (brackets.empty()) syntax_error(line_, cat("unexpected '", op, "'"));
        if (brackets.back() != op[0])
          syntax_error(line_, cat("unexpected '", op, "', expected '", brackets.back(), "'"));
        brackets.pop_back();
      }
      tokens_.push_back({TokenType::Operator, std::string(op), line_});
      advance(pos_ + op.size());
      return;
    }
    std::string shown;
    unicode::append_utf8(shown, unicode::decode(std::string_view(src_).substr(pos_, 4)).at(0));
    syntax_error(line_, cat("unexpected char '", shown, "'"));
  }

  // Byte length of a non-ASCII letter (or, inside a name, digit or combining mark) at `p`, else 0:
  // Jinja2 names follow Python identifiers.
  size_t unicode_name_length(size_t p, bool start) const {
    if (static_cast<unsigned char>(src_[p]) < 0x80) return 0;
    size_t len = 1;
    while (p + len < src_.size() && len < 4 && (static_cast<unsigned char>(src_[p + len]) & 0xC0) == 0x80) ++len;
    const auto cps = unicode::decode(std::string_view(src_).substr(p, len));
    if (cps.size() != 1) return 0;
    const char32_t c = cps[0];
    if (unicode::is_alpha(c)) return len;
    if (!start && (unicode::is_digit(c) || (c >= 0x300 && c <= 0x36F))) return len;
    return 0;
  }

  void lex_number() {
    auto digits = [&](size_t p) {
      // Digits with single underscores between them ("1_000").
      while (p < src_.size() && (is_digit(src_[p]) || (src_[p] == '_' && p + 1 < src_.size() && is_digit(src_[p + 1]))))
        ++p;
      return p;
    };
    size_t end = digits(pos_);
    bool is_float = false;
    // Like Jinja2, no float right after a dot: "x.0.1" is x[0][1].
    const bool after_dot = pos_ > 0 && src_[pos_ - 1] == '.';
    if (!after_dot && end + 1 < src_.size() && src_[end] == '.' && is_digit(src_[end + 1])) {
      end = digits(end + 1);
      is_float = true;
    }
    if (!after_dot && end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t p = end + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && is_digit(src_[p])) {
        end = digits(p);
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = pos_; i < end; ++i)
      if (src_[i] != '_') text.push_back(src_[i]);
    tokens_.push_back({is_float ? TokenType::Float : TokenType::Integer, text, line_});
    advance(end);
  }

  std::string src_;
  const Options& options_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const Options& options) {
  return Lexer(normalize_newlines(source), options).run();
}

}  // namespace endless::jinja
