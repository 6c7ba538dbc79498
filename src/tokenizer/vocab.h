// The vocabulary shared by all tokenizer kinds, and the per-kind encoders. Internal to the
// tokenizer module; the public face is tokenizer.h.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace endless::detail {

// Token attributes, as llama.cpp derives them from tokenizer.ggml.token_type (and a few names).
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 7,  // a special token swallows the whitespace before it
  kAttrRstrip = 1u << 8,  // ... or after it
};

struct TokenInfo {
  std::string text;
  float score = 0.0f;
  uint32_t attr = kAttrNormal;
};


// A fast hash for short byte strings (token texts), eight bytes at a time.
inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xFF51AFD7ED558CCDull);
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 29);
}

// Text -> index into a vector of texts (token texts, interned strings), open addressing over a
// flat array: the tokenizers' hottest lookup.
class TextIndex {
 public:
  void reserve(size_t n);
  // Returns the index already holding items[index]'s text (and leaves it), or -1 after adding.
  template <typename Item>
  int32_t insert(const std::vector<Item>& items, int32_t index);
  template <typename Item>
  int32_t find(const std::vector<Item>& items, std::string_view text) const;

 private:
  struct Slot {
    uint32_t hash = 0;
    int32_t index = -1;
  };
  std::vector<Slot> slots_;
  size_t used_ = 0;
};

enum class VocabKind { Spm, Bpe, Wpm, Ugm };

class BpeModel;
class UgmModel;

struct Vocab {
  VocabKind kind = VocabKind::Spm;
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre, "default" when absent

  std::vector<TokenInfo> tokens;
  TextIndex token_index;
  size_t max_token_len = 0;

  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1, mask = -1;
  int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;

  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  bool remove_extra_whitespaces = false;
  bool escape_whitespaces = true;  // UGM: spaces become U+2581
  bool treat_whitespace_as_suffix = false;
  bool clean_spaces = false;  // decode: " ," -> "," etc.
  // WordPiece normalization (BertNormalizer): llama.cpp of February 2025 always lowercases and
  // keeps the first code point of each NFD decomposition; newer files may say otherwise.
  bool wpm_lowercase = true;
  bool wpm_nfd = true;
  bool wpm_strip_accents = false;

  std::vector<int32_t> special_tokens;  // control, user-defined and unknown; longest text first
  std::vector<uint8_t> eog;             // per token: ends generation
  std::vector<std::string> pieces;      // per token: its bytes, rendering special tokens

  // SPM: ASCII bytes that occur in no token of more than one byte. No merge can cross such a
  // character, so the text is merged in independent stretches between them (same result,
  // small queues).
  std::array<uint8_t, 128> merge_barrier{};

  std::unique_ptr<BpeModel> bpe;
  std::unique_ptr<UgmModel> ugm;

  Vocab();
  ~Vocab();

  int32_t find(std::string_view text) const {
    if (text.size() > max_token_len) return -1;
    return token_index.find(tokens, text);
  }
  bool has_attr(int32_t id, uint32_t attr) const { return (tokens[size_t(id)].attr & attr) != 0; }
  // The token for one byte: <0xNN>, else the byte as a one-character token, else unk.
  int32_t byte_token(uint8_t byte) const;
  // Encodes text that holds no special tokens (the fragments between them), appending ids.
  void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;
};

// SentencePiece BPE as llama.cpp implements it: split into UTF-8 characters, repeatedly merge
// the adjacent pair whose concatenation is the highest-scoring token (leftmost on ties), then
// emit each piece's token or its bytes. `text` already has spaces replaced by U+2581.
void spm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out);

// WordPiece: normalize and split into words, then greedy longest-match per word.
void wpm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out);

inline std::string_view text_of(const TokenInfo& t) { return t.text; }
inline std::string_view text_of(const std::string& s) { return s; }

inline void TextIndex::reserve(size_t n) {
  size_t capacity = 16;
  while (capacity < 2 * n) capacity *= 2;
  slots_.assign(capacity, Slot{});
  used_ = 0;
}

template <typename Item>
int32_t TextIndex::find(const std::vector<Item>& items, std::string_view text) const {
  if (slots_.empty()) return -1;
  const uint64_t h = hash_bytes(text);
  const size_t mask = slots_.size() - 1;
  for (size_t i = size_t(h) & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.index < 0) return -1;
    if (slot.hash == uint32_t(h >> 32) && text_of(items[size_t(slot.index)]) == text)
      return slot.index;
  }
}

template <typename Item>
int32_t TextIndex::insert(const std::vector<Item>& items, int32_t index) {
  if (2 * (used_ + 1) > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(2 * (used_ + 1), old.size()));
    for (const Slot& slot : old)
      if (slot.index >= 0) insert(items, slot.index);
  }
  const std::string_view text = text_of(items[size_t(index)]);
  const uint64_t h = hash_bytes(text);
  const size_t mask = slots_.size() - 1;
  for (size_t i = size_t(h) & mask;; i = (i + 1) & mask) {
    Slot& slot = slots_[i];
    if (slot.index < 0) {
      slot = {uint32_t(h >> 32), index};
      ++used_;
      return -1;
    }
    if (slot.hash == uint32_t(h >> 32) && text_of(items[size_t(slot.index)]) == text)
      return slot.index;
  }
}

}  // namespace endless::detail
