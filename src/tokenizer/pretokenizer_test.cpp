// The regex pre-tokenizers: every kind compiles and covers its input, and the places where
// llama.cpp's matcher differs from plain Unicode regex semantics are reproduced.
#include "tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

namespace endless::detail {
namespace {

std::vector<std::string> split(PreTokenizerKind kind, std::string_view text) {
  const PreTokenizer pre(pretokenizer_patterns(kind));
  std::string normalized;
  std::vector<PreTokenizer::Word> words;
  pre.split(text, normalized, words);
  std::vector<std::string> out;
  for (const auto& w : words) out.push_back(normalized.substr(w.offset, w.length));
  return out;
}

using Words = std::vector<std::string>;

TEST(PreTokenizer, EveryKindCompilesAndCoversTheText) {
  const std::string text =
      "Hello, y'all! How're you 😁 ?我想在apple工作1314151天～ 3.14 ...\n\n\t  x\xE3\x80\x80y "
      "IMGIMGABZ <sentinel:12> \xFF\xC0\x80\xED\xA0\x80 Ῥ ~~ $^`|";
  for (int k = 0; k <= int(PreTokenizerKind::SeedCoder); ++k) {
    const auto kind = static_cast<PreTokenizerKind>(k);
    const PreTokenizer pre(pretokenizer_patterns(kind));
    std::string normalized;
    std::vector<PreTokenizer::Word> words;
    pre.split(text, normalized, words);
    size_t expected_offset = 0;
    for (const auto& w : words) {
      EXPECT_EQ(w.offset, expected_offset) << "kind " << k;
      EXPECT_GT(w.length, 0u) << "kind " << k;
      expected_offset = w.offset + w.length;
    }
    EXPECT_EQ(expected_offset, normalized.size()) << "kind " << k;
  }
}

TEST(PreTokenizer, Gpt2Basics) {
  EXPECT_EQ(split(PreTokenizerKind::Gpt2, "Hello world  !  "),
            (Words{"Hello", " world", " ", " !", "  "}));
  EXPECT_EQ(split(PreTokenizerKind::Gpt2, "it's 1234"), (Words{"it", "'s", " 1234"}));
}

TEST(PreTokenizer, Llama3GroupsDigitsByThree) {
  EXPECT_EQ(split(PreTokenizerKind::Llama3, "12345 IT'S"), (Words{"123", "45", " IT", "'S"}));
  EXPECT_EQ(split(PreTokenizerKind::Llama3, "a \n\n b"), (Words{"a", " \n\n", " b"}));
}

TEST(PreTokenizer, NextLineIsWhitespaceAsInLlamaCpp) {
  // PCRE2's own \s leaves out U+0085; llama.cpp's does not.
  EXPECT_EQ(split(PreTokenizerKind::Gpt2, "a\xC2\x85\xC2\x85" "b"),
            (Words{"a", "\xC2\x85", "\xC2\x85", "b"}));
}

TEST(PreTokenizer, TildeIsNoSymbolInLlamaCppsAsciiView) {
  // In deepseek-v3's pattern [\p{P}\p{S}] does not take '~', so " ~~" is not one piece.
  EXPECT_EQ(split(PreTokenizerKind::Deepseek3Llm, "x ~~"), (Words{"x", " ", "~~"}));
  EXPECT_EQ(split(PreTokenizerKind::Deepseek3Llm, "x ++"), (Words{"x", " ++"}));
}

TEST(PreTokenizer, WideSpacesStayOutOfExplicitRanges) {
  // U+3000 lies in deepseek-coder's range U+0800..U+4E00, but llama.cpp only ever sees it as
  // whitespace.
  EXPECT_EQ(split(PreTokenizerKind::DeepseekCoder, "\xE2\x86\x92\xE3\x80\x80\xE2\x86\x92"),
            (Words{"\xE2\x86\x92", "\xE3\x80\x80", "\xE2\x86\x92"}));
}

TEST(PreTokenizer, InvalidBytesBecomeReplacementCharacters) {
  EXPECT_EQ(split(PreTokenizerKind::Gpt2, "a\xFF" "b"), (Words{"a", "\xEF\xBF\xBD", "b"}));
  // Overlong forms decode (to NUL here) and surrogates pass through, as llama.cpp decodes.
  EXPECT_EQ(split(PreTokenizerKind::Gpt2, "x\xC0\x80\xED\xA0\x80y"),
            (Words{"x", std::string("\0", 1) + "\xED\xA0\x80", "y"}));
}

TEST(PreTokenizer, EmptyMatchesOnlySplit) {
  EXPECT_EQ(split(PreTokenizerKind::SuperBpe, "1234567"), (Words{"1", "234", "567"}));
}

TEST(PreTokenizer, HugeWordsDoNotFail) {
  // Long runs exercise the JIT stack (and the interpreter fallback).
  const std::string letters(200000, 'a');
  const Words words = split(PreTokenizerKind::Tekken, letters);
  ASSERT_EQ(words.size(), 1u);
  EXPECT_EQ(words[0].size(), letters.size());
  const Words spaces = split(PreTokenizerKind::Gpt2, std::string(100000, ' ') + "x");
  EXPECT_EQ(spaces.size(), 2u);
}

}  // namespace
}  // namespace endless::detail
