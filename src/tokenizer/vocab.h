// The vocabulary shared by all tokenizer kinds, and the per-kind encoders. Internal to the
// tokenizer module; the public face is tokenizer.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
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

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

enum class VocabKind { Spm, Bpe, Wpm, Ugm };

class BpeModel;
class UgmModel;

struct Vocab {
  VocabKind kind = VocabKind::Spm;
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre, "default" when absent

  std::vector<TokenInfo> tokens;
  TokenMap token_to_id;
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

  std::unique_ptr<BpeModel> bpe;
  std::unique_ptr<UgmModel> ugm;

  Vocab();
  ~Vocab();

  int32_t find(std::string_view text) const {
    auto it = token_to_id.find(text);
    return it == token_to_id.end() ? -1 : it->second;
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

}  // namespace endless::detail
