// The Unicode facts the tokenizers need: UTF-8 decoding as llama.cpp does it (lenient, invalid
// bytes become U+FFFD one byte at a time), general-category classes, White_Space, simple
// lowercase, the first code point of the canonical decomposition, and GPT-2's byte <-> character
// mapping. Internal to the tokenizer module.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace endless::unicode {

inline constexpr uint32_t kReplacement = 0xFFFD;

// General category, folded to the classes tokenizers look at.
enum class CodepointClass : uint8_t {
  Unassigned = 0,  // Cn
  Letter = 1,
  Number = 2,
  Mark = 3,
  Punctuation = 4,
  Symbol = 5,
  Separator = 6,
  Other = 7,  // Cc, Cf, Cs, Co
};

struct ClassRange {
  uint32_t start;
  uint8_t cls;
};
struct CodepointPair {
  uint32_t from;
  uint32_t to;
};
struct NfdRun {
  uint32_t first;
  uint32_t last;
  uint32_t nfd;
};

namespace tables {
extern const ClassRange kClassRanges[];
extern const size_t kClassRangeCount;
extern const CodepointPair kLowercase[];
extern const size_t kLowercaseCount;
extern const NfdRun kNfdFirst[];
extern const size_t kNfdFirstCount;
}  // namespace tables

CodepointClass class_of(uint32_t cpt);
// The White_Space property (tab..CR, space, NEL, NBSP, U+1680, U+2000..U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000): what llama.cpp's pre-tokenizers treat as \s.
bool is_whitespace(uint32_t cpt);
uint32_t to_lower(uint32_t cpt);
// First code point of the NFD decomposition ("é" -> "e"), the code point itself if none.
uint32_t nfd_first(uint32_t cpt);

// Length of the UTF-8 sequence a lead byte announces, from its high four bits alone
// (continuation bytes count as 1), as llama.cpp splits text for SPM.
inline size_t sequence_length(uint8_t lead) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

// Decodes one code point at s[pos] the way llama.cpp does: only the shape of the bytes is
// checked, so overlong forms, surrogates and values up to 0x1FFFFF pass. Returns false (pos
// unchanged) for an invalid sequence.
bool decode_lenient(std::string_view s, size_t& pos, uint32_t& cpt);

// All code points of s; each byte that starts no valid sequence becomes U+FFFD. Values above
// U+10FFFF (which llama.cpp cannot re-encode and fails on) also become U+FFFD.
std::vector<uint32_t> codepoints(std::string_view s);

// Appends the UTF-8 form of cpt (<= 0x10FFFF; surrogates are encoded like any other value).
void append_utf8(std::string& out, uint32_t cpt);

// GPT-2 byte-level BPE represents every byte by a printable character.
std::string_view byte_to_chars(uint8_t byte);  // that character, as UTF-8
int chars_to_byte(uint32_t cpt);               // the byte, or -1 if cpt stands for none

// Strict UTF-8 validation, for output: what the bytes at s[pos] are.
struct Utf8Check {
  enum Kind { Valid, Truncated, Invalid } kind;
  // Valid: the sequence's length. Truncated: the bytes up to the end, a prefix that could still
  // become valid. Invalid: the length of the maximal ill-formed subpart (to be replaced by one
  // U+FFFD, as the Unicode standard recommends).
  size_t length;
};
Utf8Check check_utf8(std::string_view s, size_t pos);

}  // namespace endless::unicode
