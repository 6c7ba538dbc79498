#include "jinja/unicode.h"

namespace endless::jinja::unicode {
namespace {

// Invalid UTF-8 bytes decode to lone surrogates U+DC80..U+DCFF (Python's "surrogateescape")
// and encode back to the same byte, so malformed input survives a round trip unchanged.
constexpr char32_t kEscapeBase = 0xDC00;

bool in(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

// Single code point case mappings; 0 means "no mapping". Multi-character mappings
// (ß -> SS, İ -> i̇, ŉ -> ʼN) are handled by append_upper/append_lower directly.
char32_t simple_upper(char32_t c) {
  if (in(c, 'a', 'z')) return c - 32;
  if (c < 0x80) return 0;
  if (c == 0xB5) return 0x39C;
  if (in(c, 0xE0, 0xFE) && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (in(c, 0x100, 0x12F) || in(c, 0x132, 0x137) || in(c, 0x14A, 0x177)) return (c & 1) ? c - 1 : 0;
  if (c == 0x131) return 'I';
  if (in(c, 0x139, 0x148) || in(c, 0x179, 0x17E)) return (c & 1) ? 0 : c - 1;
  if (c == 0x17F) return 'S';
  if (in(c, 0x180, 0x24F)) {
    // Latin Extended-B: the digraphs (DŽ Dž dž ...) and the regular even/odd pairs.
    if (c == 0x1C5 || c == 0x1C6) return 0x1C4;
    if (c == 0x1C8 || c == 0x1C9) return 0x1C7;
    if (c == 0x1CB || c == 0x1CC) return 0x1CA;
    if (c == 0x1F2 || c == 0x1F3) return 0x1F1;
    if (in(c, 0x1CD, 0x1DC)) return (c & 1) ? 0 : c - 1;
    if (in(c, 0x1DE, 0x1EF) || in(c, 0x1F8, 0x21F) || in(c, 0x222, 0x233) || in(c, 0x246, 0x24F))
      return (c & 1) ? c - 1 : 0;
    return 0;
  }
  if (in(c, 0x3B1, 0x3C1) || in(c, 0x3C3, 0x3CB)) return c - 32;
  if (c == 0x3C2) return 0x3A3;
  if (c == 0x3AC) return 0x386;
  if (in(c, 0x3AD, 0x3AF)) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (in(c, 0x3CD, 0x3CE)) return c - 63;
  if (in(c, 0x430, 0x44F)) return c - 32;
  if (in(c, 0x450, 0x45F)) return c - 80;
  if (in(c, 0x460, 0x481) || in(c, 0x48A, 0x4BF) || in(c, 0x4D0, 0x52F)) return (c & 1) ? c - 1 : 0;
  if (in(c, 0x4C1, 0x4CE)) return (c & 1) ? 0 : c - 1;
  if (c == 0x4CF) return 0x4C0;
  if (in(c, 0x561, 0x586)) return c - 48;
  if (in(c, 0x1E00, 0x1E95) || in(c, 0x1EA0, 0x1EFF)) return (c & 1) ? c - 1 : 0;
  if (in(c, 0xFF41, 0xFF5A)) return c - 32;
  return 0;
}

char32_t simple_lower(char32_t c) {
  if (in(c, 'A', 'Z')) return c + 32;
  if (c < 0x80) return 0;
  if (in(c, 0xC0, 0xDE) && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (in(c, 0x100, 0x12F) || in(c, 0x132, 0x137) || in(c, 0x14A, 0x177)) return (c & 1) ? 0 : c + 1;
  if (in(c, 0x139, 0x148) || in(c, 0x179, 0x17E)) return (c & 1) ? c + 1 : 0;
  if (in(c, 0x180, 0x24F)) {
    if (c == 0x1C4 || c == 0x1C5) return 0x1C6;
    if (c == 0x1C7 || c == 0x1C8) return 0x1C9;
    if (c == 0x1CA || c == 0x1CB) return 0x1CC;
    if (c == 0x1F1 || c == 0x1F2) return 0x1F3;
    if (in(c, 0x1CD, 0x1DC)) return (c & 1) ? c + 1 : 0;
    if (in(c, 0x1DE, 0x1EF) || in(c, 0x1F8, 0x21F) || in(c, 0x222, 0x233) || in(c, 0x246, 0x24F))
      return (c & 1) ? 0 : c + 1;
    return 0;
  }
  if (in(c, 0x391, 0x3A1) || in(c, 0x3A3, 0x3AB)) return c + 32;
  if (c == 0x386) return 0x3AC;
  if (in(c, 0x388, 0x38A)) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (in(c, 0x38E, 0x38F)) return c + 63;
  if (in(c, 0x410, 0x42F)) return c + 32;
  if (in(c, 0x400, 0x40F)) return c + 80;
  if (in(c, 0x460, 0x481) || in(c, 0x48A, 0x4BF) || in(c, 0x4D0, 0x52F)) return (c & 1) ? 0 : c + 1;
  if (in(c, 0x4C1, 0x4CE)) return (c & 1) ? c + 1 : 0;
  if (c == 0x4C0) return 0x4CF;
  if (in(c, 0x531, 0x556)) return c + 48;
  if (in(c, 0x1E00, 0x1E95) || in(c, 0x1EA0, 0x1EFF)) return (c & 1) ? 0 : c + 1;
  if (c == 0x1E9E) return 0xDF;
  if (in(c, 0xFF21, 0xFF3A)) return c + 32;
  return 0;
}

const char* ligature(char32_t c);

}  // namespace

std::vector<char32_t> decode(std::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int extra = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((b0 & 0xE0) == 0xC0) {
      extra = 1, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      extra = 2, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      extra = 3, cp = b0 & 0x07, min = 0x10000;
    } else {
      out.push_back(kEscapeBase + b0);
      ++i;
      continue;
    }
    bool ok = i + static_cast<size_t>(extra) < n;
    for (int k = 1; ok && k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if ((b & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (b & 0x3F);
    }
    if (!ok || cp < min || cp > 0x10FFFF || in(cp, 0xD800, 0xDFFF)) {
      out.push_back(kEscapeBase + b0);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (in(c, kEscapeBase + 0x80, kEscapeBase + 0xFF)) {
    out.push_back(static_cast<char>(c - kEscapeBase));
  } else if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode(const std::vector<char32_t>& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) append_utf8(out, c);
  return out;
}

bool is_ascii(std::string_view text) {
  for (char ch : text)
    if (static_cast<unsigned char>(ch) >= 0x80) return false;
  return true;
}

size_t length(std::string_view text) {
  if (is_ascii(text)) return text.size();
  return decode(text).size();
}

bool is_space(char32_t c) {
  return in(c, 0x09, 0x0D) || in(c, 0x1C, 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         in(c, 0x2000, 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_printable(char32_t c) {
  if (c == ' ') return true;
  if (c < 0x20 || in(c, 0x7F, 0xA0)) return false;
  if (c == 0xAD || c == 0x1680 || in(c, 0x2000, 0x200F) || in(c, 0x2028, 0x202F) ||
      in(c, 0x205F, 0x2064) || in(c, 0x2066, 0x206F) || c == 0x3000 || c == 0xFEFF)
    return false;
  if (in(c, 0x600, 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E) return false;
  if (in(c, 0xD800, 0xF8FF) || in(c, 0xFDD0, 0xFDEF) || in(c, 0xFFF9, 0xFFFB) || c == 0xFFFE ||
      c == 0xFFFF || c >= 0xF0000 || in(c, 0xE0000, 0xE007F))
    return false;
  return true;
}

// Titlecase digraphs (ǅ ǈ ǋ ǲ) are cased but neither upper nor lower.
bool is_titlecase(char32_t c) { return c == 0x1C5 || c == 0x1C8 || c == 0x1CB || c == 0x1F2; }
bool is_upper(char32_t c) { return (simple_lower(c) != 0 && !is_titlecase(c)) || c == 0x130; }
bool is_lower(char32_t c) {
  return (simple_upper(c) != 0 && !is_titlecase(c)) || c == 0xDF || c == 0x149 || c == 0x138 || c == 0xAA ||
         c == 0xBA || ligature(c) != nullptr;
}
bool is_cased(char32_t c) { return is_upper(c) || is_lower(c) || is_titlecase(c); }

bool is_alpha(char32_t c) {
  if (in(c, 'a', 'z') || in(c, 'A', 'Z')) return true;
  if (c < 0x80) return false;
  if (is_cased(c)) return true;
  return c == 0xAA || c == 0xBA || (in(c, 0xC0, 0x24F) && c != 0xD7 && c != 0xF7) ||
         in(c, 0x370, 0x3FF) || in(c, 0x400, 0x52F) || in(c, 0x531, 0x587) ||
         in(c, 0x5D0, 0x5EA) || in(c, 0x620, 0x64A) || in(c, 0x904, 0x939) ||
         in(c, 0xE01, 0xE30) || in(c, 0x3041, 0x3096) || in(c, 0x30A1, 0x30FA) ||
         in(c, 0x3400, 0x4DBF) || in(c, 0x4E00, 0x9FFF) || in(c, 0xAC00, 0xD7A3) ||
         in(c, 0xF900, 0xFAFF) || in(c, 0x20000, 0x2FA1F);
}

bool is_digit(char32_t c) {
  return in(c, '0', '9') || c == 0xB2 || c == 0xB3 || c == 0xB9 || in(c, 0x660, 0x669) ||
         in(c, 0x6F0, 0x6F9) || in(c, 0x966, 0x96F) || in(c, 0xFF10, 0xFF19);
}

namespace {
// The Latin ligatures ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ expand when case-mapped.
const char* ligature(char32_t c) {
  static const char* const kLigatures[] = {"ff", "fi", "fl", "ffi", "ffl", "st", "st"};
  return in(c, 0xFB00, 0xFB06) ? kLigatures[c - 0xFB00] : nullptr;
}
}  // namespace

void append_upper(std::string& out, char32_t c) {
  if (const char* lig = ligature(c)) {
    for (const char* p = lig; *p; ++p) out.push_back(static_cast<char>(*p - 32));
  } else if (c == 0xDF) {
    out += "SS";
  } else if (c == 0x149) {
    append_utf8(out, 0x2BC);
    out.push_back('N');
  } else if (char32_t u = simple_upper(c)) {
    append_utf8(out, u);
  } else {
    append_utf8(out, c);
  }
}

void append_lower(std::string& out, char32_t c) {
  if (c == 0x130) {
    out.push_back('i');
    append_utf8(out, 0x307);
  } else if (char32_t l = simple_lower(c)) {
    append_utf8(out, l);
  } else {
    append_utf8(out, c);
  }
}

std::string to_upper(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  if (is_ascii(text)) {
    for (char ch : text) out.push_back((ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 32) : ch);
    return out;
  }
  for (char32_t c : decode(text)) append_upper(out, c);
  return out;
}

std::string to_lower(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  if (is_ascii(text)) {
    for (char ch : text) out.push_back((ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch);
    return out;
  }
  const auto cps = decode(text);
  for (size_t i = 0; i < cps.size(); ++i) {
    // Python applies the Final_Sigma rule: a capital sigma ending a word becomes ς.
    if (cps[i] == 0x3A3 && i > 0 && is_cased(cps[i - 1]) &&
        (i + 1 == cps.size() || !is_cased(cps[i + 1]))) {
      append_utf8(out, 0x3C2);
      continue;
    }
    append_lower(out, cps[i]);
  }
  return out;
}

void append_title(std::string& out, char32_t c) {
  if (const char* lig = ligature(c)) {
    out.push_back(static_cast<char>(lig[0] - 32));
    out += lig + 1;
  } else if (c == 0xDF) {
    out += "Ss";
  } else if (in(c, 0x1C4, 0x1C6) || in(c, 0x1C7, 0x1C9) || in(c, 0x1CA, 0x1CC) || in(c, 0x1F1, 0x1F3)) {
    // Digraphs have a distinct titlecase form in the middle of each triple.
    const char32_t base = in(c, 0x1F1, 0x1F3) ? 0x1F1 : 0x1C4 + (c - 0x1C4) / 3 * 3;
    append_utf8(out, base + 1);
  } else {
    append_upper(out, c);
  }
}

std::string to_title(std::string_view text) {
  // Python's str.title(): a cased character following an uncased one starts a word.
  std::string out;
  out.reserve(text.size());
  bool previous_cased = false;
  for (char32_t c : decode(text)) {
    if (previous_cased) append_lower(out, c);
    else append_title(out, c);
    previous_cased = is_cased(c);
  }
  return out;
}

std::string capitalize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool first = true;
  for (char32_t c : decode(text)) {
    if (first) append_title(out, c);
    else append_lower(out, c);
    first = false;
  }
  return out;
}

namespace {

// Byte length of the code point ending at `end` (exclusive), assuming valid UTF-8.
size_t last_code_point(std::string_view text, size_t end, char32_t& cp) {
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
    --start;
  const auto cps = decode(text.substr(start, end - start));
  if (cps.size() != 1) {
    cp = kEscapeBase + static_cast<unsigned char>(text[end - 1]);
    return 1;
  }
  cp = cps[0];
  return end - start;
}

size_t first_code_point(std::string_view text, size_t start, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(text[start]);
  size_t len = b0 < 0x80 ? 1 : (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 1;
  if (start + len > text.size()) len = 1;
  const auto cps = decode(text.substr(start, len));
  if (cps.size() != 1) {
    cp = kEscapeBase + b0;
    return 1;
  }
  cp = cps[0];
  return len;
}

}  // namespace

std::string_view lstrip(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    char32_t cp;
    const size_t len = first_code_point(text, i, cp);
    if (!is_space(cp)) break;
    i += len;
  }
  return text.substr(i);
}

std::string_view rstrip(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    char32_t cp;
    const size_t len = last_code_point(text, end, cp);
    if (!is_space(cp)) break;
    end -= len;
  }
  return text.substr(0, end);
}

std::string_view strip(std::string_view text) { return rstrip(lstrip(text)); }

std::string strip_chars(std::string_view text, std::string_view chars, bool left, bool right) {
  const auto set = decode(chars);
  auto cps = decode(text);
  auto member = [&](char32_t c) {
    for (char32_t s : set)
      if (s == c) return true;
    return false;
  };
  size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && member(cps[begin])) ++begin;
  if (right)
    while (end > begin && member(cps[end - 1])) --end;
  return encode(std::vector<char32_t>(cps.begin() + static_cast<std::ptrdiff_t>(begin),
                                      cps.begin() + static_cast<std::ptrdiff_t>(end)));
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  const auto cps = decode(text);
  std::string current;
  size_t i = 0;
  bool pending = false;  // whether `current` holds a line not yet pushed
  while (i < cps.size()) {
    const char32_t c = cps[i];
    const bool is_break = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || in(c, 0x1C, 0x1E) ||
                          c == 0x85 || c == 0x2028 || c == 0x2029;
    if (is_break) {
      lines.push_back(std::move(current));
      current.clear();
      pending = false;
      if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    } else {
      append_utf8(current, c);
      pending = true;
    }
    ++i;
  }
  if (pending) lines.push_back(std::move(current));
  return lines;
}

}  // namespace endless::jinja::unicode
