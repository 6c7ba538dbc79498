// Converting Karpathy's llama2.c checkpoints (run.c's .bin files) and llama2.c tokenizers
// (tok*.bin) into GGUF files of llama.cpp's `llama` architecture.
//
// Checkpoint formats understood:
//   version 0 ("legacy"): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//     seq_len; a negative vocab_size means a separate classifier follows the other weights), then
//     float32 tensors grouped by kind across layers: token embeddings, attention norms, wq, wk, wv,
//     wo, ffn norms, w1, w2, w3, final norm, RoPE tables (cos, sin), [classifier].
//   version 1: a 256-byte header starting with the magic "ak42", the version, the same 7 int32
//     and a shared-classifier byte, then float32 tensors: attention norms, ffn norms, final norm,
//     token embeddings, wq, wk, wv, wo, w1, w2, w3, [classifier]; no RoPE tables.
// The weights are copied unchanged: llama2.c's RoPE rotates adjacent pairs of each head, which is
// what ggml's normal (non-NeoX) rope does, so wq and wk need no permutation. The result equals
// what llama.cpp's convert-llama2c-to-ggml writes (same keys, key order and tensor order), except
// that the context length defaults to the checkpoint's seq_len.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace endless::convert {

struct Llama2cConfig {
  int version = 0;  // 0 legacy, 1 "ak42" version 1
  int64_t dim = 0;
  int64_t hidden_dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t vocab_size = 0;  // always positive here; the sign of the legacy field is in shared_classifier
  int64_t seq_len = 0;
  bool shared_classifier = true;  // the output projection is the token embedding table

  int64_t head_size() const { return dim / n_heads; }
  int64_t kv_dim() const { return head_size() * n_kv_heads; }
  std::string describe() const;  // "dim 64, hidden_dim 172, 5 layers, ..." for messages
};

// A llama2.c vocabulary spelled the way GGUF's `llama` (SentencePiece) tokenizer expects.
struct Llama2cVocab {
  int32_t max_token_length = 0;
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // convert::TokenKind values
};

// Reads and checks a checkpoint's header, including that the file holds exactly the weights the
// header describes. `name` is used in error messages.
Llama2cConfig parse_llama2c_config(std::span<const uint8_t> checkpoint, const std::string& name);

// Reads a llama2.c tokenizer that must hold exactly `vocab_size` tokens. Ids 0, 1 and 2 become
// <unk>, <s> and </s>; "<0xHH>" pieces are byte tokens; spaces become U+2581, as llama.cpp's
// converter does.
Llama2cVocab parse_llama2c_tokenizer(std::span<const uint8_t> tokenizer, int64_t vocab_size,
                                     const std::string& name);

struct Llama2cOptions {
  std::string name = "llama";   // general.name (llama.cpp's converter writes "llama")
  int64_t context_length = 0;   // llama.context_length; 0 means the checkpoint's seq_len
  // With a shared classifier llama.cpp's converter writes output.weight as a copy of
  // token_embd.weight; with this set it is left out and loaders tie the two.
  bool omit_shared_output = false;
};

// Builds the GGUF image of a checkpoint and its tokenizer.
gguf::Writer llama2c_to_gguf(std::span<const uint8_t> checkpoint, const std::string& checkpoint_name,
                             std::span<const uint8_t> tokenizer, const std::string& tokenizer_name,
                             const Llama2cOptions& options = {});

// Converts files; returns the checkpoint's configuration. The output is written to a temporary
// file beside `out_path` and renamed into place, so a failure never leaves a partial model.
Llama2cConfig convert_llama2c(const std::string& checkpoint_path, const std::string& tokenizer_path,
                              const std::string& out_path, const Llama2cOptions& options = {});

}  // namespace endless::convert
