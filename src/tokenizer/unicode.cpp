#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace endless::unicode {

CodepointClass class_of(uint32_t cpt) {
  if (cpt >= 0x110000) return CodepointClass::Unassigned;
  const ClassRange* begin = tables::kClassRanges;
  const ClassRange* end = begin + tables::kClassRangeCount;
  // The last range starting at or before cpt.
  const ClassRange* it = std::upper_bound(
      begin, end, cpt, [](uint32_t c, const ClassRange& r) { return c < r.start; });
  return static_cast<CodepointClass>((it - 1)->cls);
}

bool is_whitespace(uint32_t cpt) {
  if (cpt <= 0x20) return cpt == 0x20 || (cpt >= 0x09 && cpt <= 0x0D);
  if (cpt < 0x85) return false;
  switch (cpt) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return true;
    default:
      return cpt >= 0x2000 && cpt <= 0x200A;
  }
}

uint32_t to_lower(uint32_t cpt) {
  if (cpt < 0x80) return (cpt >= 'A' && cpt <= 'Z') ? cpt + 32 : cpt;
  const CodepointPair* begin = tables::kLowercase;
  const CodepointPair* end = begin + tables::kLowercaseCount;
  const CodepointPair* it = std::lower_bound(
      begin, end, cpt, [](const CodepointPair& p, uint32_t c) { return p.from < c; });
  return (it != end && it->from == cpt) ? it->to : cpt;
}

uint32_t nfd_first(uint32_t cpt) {
  if (cpt < 0xC0) return cpt;
  const NfdRun* begin = tables::kNfdFirst;
  const NfdRun* end = begin + tables::kNfdFirstCount;
  const NfdRun* it = std::upper_bound(
      begin, end, cpt, [](uint32_t c, const NfdRun& r) { return c < r.first; });
  if (it == begin) return cpt;
  --it;
  return cpt <= it->last ? it->nfd : cpt;
}

bool decode_lenient(std::string_view s, size_t& pos, uint32_t& cpt) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const auto is_cont = [&](size_t i) { return i < s.size() && (byte(i) & 0xC0) == 0x80; };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) {
    cpt = b0;
    pos += 1;
    return true;
  }
  if ((b0 & 0x40) == 0) return false;  // a continuation byte cannot start a character
  if ((b0 & 0x20) == 0) {
    if (!is_cont(pos + 1)) return false;
    cpt = (uint32_t(b0 & 0x1F) << 6) | (byte(pos + 1) & 0x3F);
    pos += 2;
    return true;
  }
  if ((b0 & 0x10) == 0) {
    if (!is_cont(pos + 1) || !is_cont(pos + 2)) return false;
    cpt = (uint32_t(b0 & 0x0F) << 12) | (uint32_t(byte(pos + 1) & 0x3F) << 6) |
          (byte(pos + 2) & 0x3F);
    pos += 3;
    return true;
  }
  if ((b0 & 0x08) == 0) {
    if (!is_cont(pos + 1) || !is_cont(pos + 2) || !is_cont(pos + 3)) return false;
    cpt = (uint32_t(b0 & 0x07) << 18) | (uint32_t(byte(pos + 1) & 0x3F) << 12) |
          (uint32_t(byte(pos + 2) & 0x3F) << 6) | (byte(pos + 3) & 0x3F);
    pos += 4;
    return true;
  }
  return false;
}

std::vector<uint32_t> codepoints(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    uint32_t cpt;
    if (decode_lenient(s, pos, cpt)) {
      out.push_back(cpt <= 0x10FFFF ? cpt : kReplacement);
    } else {
      out.push_back(kReplacement);
      ++pos;
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | ((cpt >> 18) & 0x07)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

namespace {

// GPT-2's table: printable Latin-1 bytes stand for themselves, the other 68 bytes are mapped in
// order to U+0100, U+0101, ...
struct ByteMap {
  std::array<std::string, 256> chars;
  std::array<uint32_t, 256> cpts{};
  ByteMap() {
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      cpts[b] = printable ? uint32_t(b) : uint32_t(256 + next++);
      append_utf8(chars[b], cpts[b]);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

std::string_view byte_to_chars(uint8_t byte) { return byte_map().chars[byte]; }

int chars_to_byte(uint32_t cpt) {
  if (cpt < 256) {
    const bool printable =
        (cpt >= 0x21 && cpt <= 0x7E) || (cpt >= 0xA1 && cpt <= 0xAC) || cpt >= 0xAE;
    return printable ? int(cpt) : -1;
  }
  if (cpt < 256 + 68) {
    const auto& cpts = byte_map().cpts;
    for (int b = 0; b < 256; ++b)
      if (cpts[b] == cpt) return b;
  }
  return -1;
}

Utf8Check check_utf8(std::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) return {Utf8Check::Valid, 1};
  size_t n;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {Utf8Check::Invalid, 1};
  }
  for (size_t i = 1; i < n; ++i) {
    if (pos + i >= s.size()) return {Utf8Check::Truncated, i};
    const uint8_t b = byte(pos + i);
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b & 0xC0) == 0x80;
    if (!ok) return {Utf8Check::Invalid, i};
  }
  return {Utf8Check::Valid, n};
}

}  // namespace endless::unicode
