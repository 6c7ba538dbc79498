// WordPiece ("bert" vocabularies), following llama.cpp's llm_tokenizer_wpm of February 2025.
// The vocabulary is in llama.cpp's phantom-space form: word-initial pieces start with U+2581,
// continuation pieces carry no "##".
#include <algorithm>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace endless::detail {

namespace {

bool is_chinese_char(uint32_t cpt) {
  return (cpt >= 0x04E00 && cpt <= 0x09FFF) || (cpt >= 0x03400 && cpt <= 0x04DBF) ||
         (cpt >= 0x20000 && cpt <= 0x2A6DF) || (cpt >= 0x2A700 && cpt <= 0x2B73F) ||
         (cpt >= 0x2B740 && cpt <= 0x2B81F) ||
         (cpt >= 0x2B920 && cpt <= 0x2CEAF) ||  // HF's BERT starts this block at 0x2B920
         (cpt >= 0x0F900 && cpt <= 0x0FAFF) || (cpt >= 0x2F800 && cpt <= 0x2FA1F);
}

// BertNormalizer + BertPreTokenizer: drop accents (first code point of the NFD form), lowercase,
// drop control characters, split on whitespace, make punctuation, ASCII symbols and CJK
// ideographs words of their own.
std::vector<std::string> split_words(std::string_view text) {
  using unicode::CodepointClass;
  std::vector<std::string> words(1);
  for (uint32_t cpt : unicode::codepoints(text)) {
    cpt = unicode::nfd_first(cpt);
    if (unicode::is_whitespace(cpt)) {
      if (!words.back().empty()) words.emplace_back();
      continue;
    }
    const CodepointClass cls = unicode::class_of(cpt);
    if (cpt == 0 || cpt == unicode::kReplacement || cls == CodepointClass::Other) continue;
    std::string s;
    unicode::append_utf8(s, unicode::to_lower(cpt));
    if (cls == CodepointClass::Punctuation || (cpt < 0x7F && cls == CodepointClass::Symbol) ||
        is_chinese_char(cpt)) {
      if (!words.back().empty()) words.emplace_back();
      words.back() = std::move(s);
      words.emplace_back();
    } else {
      words.back() += s;
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

}  // namespace

void wpm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) {
  for (const std::string& word : split_words(text)) {
    if (word.empty()) continue;
    const std::string phantom = "\xE2\x96\x81" + word;
    const size_t n = phantom.size();
    const size_t start = out.size();
    // Greedy longest match from each position; a word with any unmatched position is unknown.
    for (size_t i = 0; i < n; ++i) {
      bool matched = false;
      for (size_t j = std::min(n, i + vocab.max_token_len + 1); j > i; --j) {
        const int32_t id = vocab.find(std::string_view(phantom).substr(i, j - i));
        if (id >= 0) {
          out.push_back(id);
          matched = true;
          i = j - 1;
          break;
        }
      }
      if (!matched) {
        out.resize(start);
        break;
      }
    }
    if (out.size() == start && vocab.unk >= 0) out.push_back(vocab.unk);
  }
}

}  // namespace endless::detail
