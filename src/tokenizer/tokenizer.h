// Text <-> token ids, read entirely from a GGUF file's tokenizer.ggml.* metadata.
//
// Token ids equal llama.cpp's (reference commit c392e509, February 2025) for the four vocabulary
// kinds it shares with us:
//   "llama" SentencePiece-style BPE: merges chosen by token score, byte fallback <0xNN>;
//   "gpt2"  byte-level BPE: ranked merges after a regex pre-tokenizer (tokenizer.ggml.pre);
//   "bert"  WordPiece (greedy longest match with a phantom-space prefix);
//   "t5"    Unigram (Viterbi over token scores, optional precompiled normalization charsmap).
// Any other tokenizer.ggml.model, or an unknown pre-tokenizer, is an Error.
//
// A Tokenizer is immutable once built and cheap to copy (copies share one vocabulary); every
// const method may be called from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace endless {

namespace gguf {
class File;
}
namespace detail {
struct Vocab;
}

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* metadata. Throws Error naming the problem for a missing or malformed
  // vocabulary and for tokenizer kinds or pre-tokenizers we do not support.
  static Tokenizer from_gguf(const gguf::File& f);

  // Text to ids. add_special adds BOS/EOS (CLS/SEP for bert) as the model asks. parse_special
  // lets control tokens written in the text (e.g. "<s>") become those tokens; user-defined tokens
  // are always matched, as in llama.cpp. Any bytes are accepted, including invalid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special = false) const;

  // The bytes one token stands for: SPM '▁' -> ' ', <0xNN> byte tokens -> that byte, byte-level
  // BPE characters -> their bytes. Control and unknown tokens give "" unless render_special.
  // Throws Error for an id out of range.
  std::string token_to_piece(int32_t id, bool render_special = false) const;

  // Ids to text exactly as llama.cpp's detokenize: the space the encoder prefixed is removed from
  // the first token, gpt2-style models clean spaces before punctuation. remove_special drops a
  // leading BOS and trailing EOS the model adds; render_special prints control tokens.
  std::string decode(std::span<const int32_t> ids, bool remove_special = false,
                     bool render_special = false) const;

  int32_t n_vocab() const;
  int32_t bos_id() const;  // -1 if none (for bert: CLS)
  int32_t eos_id() const;  // -1 if none
  int32_t eot_id() const;  // end of turn, -1 if none
  int32_t unk_id() const;  // -1 if none
  int32_t sep_id() const;  // -1 if none
  int32_t pad_id() const;  // -1 if none
  bool add_bos() const;    // from metadata, with llama.cpp's defaults per model type
  bool add_eos() const;
  bool add_space_prefix() const;  // SPM/UGM: a space is put before the text before encoding
  bool is_eog(int32_t id) const;  // end of generation (eos, eot, eom, ...)
  bool is_control(int32_t id) const;  // control or unknown token: no text of its own
  const std::string& token_text(int32_t id) const;  // as stored in the vocabulary
  float token_score(int32_t id) const;
  std::string_view model_name() const;  // "llama", "gpt2", "bert", "t5"
  std::string_view pre_name() const;    // tokenizer.ggml.pre as used ("default" when absent)

 private:
  explicit Tokenizer(std::shared_ptr<const detail::Vocab> vocab) : vocab_(std::move(vocab)) {}
  std::shared_ptr<const detail::Vocab> vocab_;
};

// Streaming-safe decoding for generation: push() returns only complete, valid UTF-8 and holds a
// character whose bytes are split across tokens until it completes; invalid sequences become
// U+FFFD instead of broken output. For models that prefix a space (SPM), the leading space of the
// first text token is dropped, also after a leading BOS (as llama2.c and SentencePiece print it).
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tok);
  std::string push(int32_t id);
  std::string finish();  // whatever is held, completed with U+FFFD if broken; then resets

 private:
  const Tokenizer* tok_;
  std::string pending_;  // bytes of an incomplete UTF-8 character
  bool at_start_ = true;
};

}  // namespace endless
