#include "convert/llama2c.h"

#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "convert/token_types.h"
#include "convert/write_file.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace endless::convert {
namespace {

constexpr uint32_t kVersionedMagic = 0x616b3432;  // "ak42" as llama2.c's export.py packs it
constexpr size_t kLegacyHeaderBytes = 7 * 4;
constexpr size_t kVersionedHeaderBytes = 256;

// The tensor groups of a checkpoint. Each group holds one tensor per layer, except the embedding,
// final norm, RoPE tables and classifier.
enum Part { kEmbedding, kAttnNorm, kWq, kWk, kWv, kWo, kFfnNorm, kW1, kW2, kW3, kFinalNorm,
            kRopeTables, kClassifier, kNumParts };

constexpr std::array<Part, 13> kLegacyOrder = {kEmbedding, kAttnNorm, kWq, kWk, kWv, kWo,
                                               kFfnNorm, kW1, kW2, kW3, kFinalNorm, kRopeTables,
                                               kClassifier};
constexpr std::array<Part, 12> kVersion1Order = {kAttnNorm, kFfnNorm, kFinalNorm, kEmbedding,
                                                 kWq, kWk, kWv, kWo, kW1, kW2, kW3, kClassifier};

int32_t read_i32(std::span<const uint8_t> bytes, size_t at) {
  int32_t v;
  std::memcpy(&v, bytes.data() + at, 4);
  return v;
}

uint32_t read_u32(std::span<const uint8_t> bytes, size_t at) {
  uint32_t v;
  std::memcpy(&v, bytes.data() + at, 4);
  return v;
}

float read_f32(std::span<const uint8_t> bytes, size_t at) {
  float v;
  std::memcpy(&v, bytes.data() + at, 4);
  return v;
}

// Header fields are attacker-controlled int32s, so products of them can overflow int64.
int64_t checked_mul(int64_t a, int64_t b, const std::string& name) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    fail(name, ": the header's sizes overflow (not a llama2.c checkpoint?)");
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const std::string& name) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    fail(name, ": the header's sizes overflow (not a llama2.c checkpoint?)");
  return r;
}

struct Layout {
  size_t header_bytes = 0;
  std::array<int64_t, kNumParts> floats_per_layer{};  // or in all, for whole-model parts
  std::array<int64_t, kNumParts> offset{};            // bytes from the start of the file
  std::array<bool, kNumParts> per_layer{};
  int64_t total_bytes = 0;
};

Layout layout_of(const Llama2cConfig& c, bool shared_classifier, const std::string& name) {
  Layout l;
  l.header_bytes = c.version == 0 ? kLegacyHeaderBytes : kVersionedHeaderBytes;
  auto set = [&](Part p, int64_t floats, bool per_layer) {
    l.floats_per_layer[p] = floats;
    l.per_layer[p] = per_layer;
  };
  const int64_t dim = c.dim;
  set(kEmbedding, checked_mul(c.vocab_size, dim, name), false);
  set(kAttnNorm, dim, true);
  set(kWq, checked_mul(dim, dim, name), true);
  set(kWk, checked_mul(c.kv_dim(), dim, name), true);
  set(kWv, checked_mul(c.kv_dim(), dim, name), true);
  set(kWo, checked_mul(dim, dim, name), true);
  set(kFfnNorm, dim, true);
  set(kW1, checked_mul(c.hidden_dim, dim, name), true);
  set(kW2, checked_mul(c.hidden_dim, dim, name), true);
  set(kW3, checked_mul(c.hidden_dim, dim, name), true);
  set(kFinalNorm, dim, false);
  // Real and imaginary tables of seq_len x head_size/2 each; only the legacy format has them.
  set(kRopeTables, c.version == 0 ? checked_mul(c.seq_len, c.head_size(), name) : 0, false);
  set(kClassifier, shared_classifier ? 0 : checked_mul(c.vocab_size, dim, name), false);

  int64_t at = static_cast<int64_t>(l.header_bytes);
  auto place = [&](Part p) {
    l.offset[p] = at;
    int64_t floats = l.floats_per_layer[p];
    if (l.per_layer[p]) floats = checked_mul(floats, c.n_layers, name);
    at = checked_add(at, checked_mul(floats, 4, name), name);
  };
  if (c.version == 0)
    for (Part p : kLegacyOrder) place(p);
  else
    for (Part p : kVersion1Order) place(p);
  l.total_bytes = at;
  return l;
}

void check_positive(int64_t v, const char* field, const std::string& name) {
  if (v <= 0) fail(name, ": header field ", field, " is ", v, " (must be positive)");
}

bool is_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return false;
  auto hex = [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)) != 0; };
  return hex(piece[3]) && hex(piece[4]);
}

std::string with_space_markers(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (char ch : piece) {
    if (ch == ' ')
      out += kSpaceMarker;
    else
      out += ch;
  }
  return out;
}

std::string part_label(Part p, int64_t layer) {
  static constexpr std::array<const char*, kNumParts> kNames = {
      "token_embedding_table", "rms_att_weight", "wq", "wk", "wv", "wo", "rms_ffn_weight", "w1",
      "w2", "w3", "rms_final_weight", "freq_cis", "wcls"};
  if (layer < 0) return kNames[p];
  return cat(kNames[p], " of layer ", layer);
}

}  // namespace

std::string Llama2cConfig::describe() const {
  return cat("dim ", dim, ", hidden_dim ", hidden_dim, ", ", n_layers, " layers, ", n_heads,
             " heads, ", n_kv_heads, " KV heads, vocab ", vocab_size, ", seq_len ", seq_len, ", ",
             shared_classifier ? "shared" : "separate", " classifier");
}

Llama2cConfig parse_llama2c_config(std::span<const uint8_t> file, const std::string& name) {
  if (file.size() >= 4 && std::memcmp(file.data(), "GGUF", 4) == 0)
    fail(name, " is a GGUF file, not a llama2.c checkpoint");
  if (file.size() < kLegacyHeaderBytes)
    fail(name, " is truncated: ", file.size(), " bytes, too short for a llama2.c header (",
         kLegacyHeaderBytes, " bytes)");

  Llama2cConfig c;
  size_t fields = 0;
  if (read_u32(file, 0) == kVersionedMagic) {
    if (file.size() < 8) fail(name, " is truncated inside its header");
    const int32_t version = read_i32(file, 4);
    if (version != 1)
      fail(name, " is a llama2.c checkpoint of version ", version,
           "; only versions 0 (legacy) and 1 (float32) can be converted");
    if (file.size() < kVersionedHeaderBytes)
      fail(name, " is truncated: ", file.size(), " bytes, shorter than its ",
           kVersionedHeaderBytes, "-byte header");
    c.version = 1;
    fields = 8;
  }
  c.dim = read_i32(file, fields + 0);
  c.hidden_dim = read_i32(file, fields + 4);
  c.n_layers = read_i32(file, fields + 8);
  c.n_heads = read_i32(file, fields + 12);
  c.n_kv_heads = read_i32(file, fields + 16);
  c.vocab_size = read_i32(file, fields + 20);
  c.seq_len = read_i32(file, fields + 24);
  if (c.version == 0) {
    // The legacy format flags a separate classifier with a negative vocabulary size.
    c.shared_classifier = c.vocab_size > 0;
    c.vocab_size = c.vocab_size < 0 ? -c.vocab_size : c.vocab_size;
  } else {
    const uint8_t flag = file[fields + 28];
    if (flag > 1) fail(name, ": shared-classifier flag is ", int(flag), " (must be 0 or 1)");
    c.shared_classifier = flag == 1;
  }

  check_positive(c.dim, "dim", name);
  check_positive(c.hidden_dim, "hidden_dim", name);
  check_positive(c.n_layers, "n_layers", name);
  check_positive(c.n_heads, "n_heads", name);
  check_positive(c.n_kv_heads, "n_kv_heads", name);
  check_positive(c.vocab_size, "vocab_size", name);
  check_positive(c.seq_len, "seq_len", name);
  if (c.dim % c.n_heads != 0)
    fail(name, ": dim ", c.dim, " is not a multiple of n_heads ", c.n_heads);
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    fail(name, ": n_heads ", c.n_heads, " is not a multiple of n_kv_heads ", c.n_kv_heads);
  if (c.head_size() % 2 != 0)
    fail(name, ": head size ", c.head_size(), " is odd; RoPE rotates pairs");
  if (c.vocab_size < 3)
    fail(name, ": vocab_size ", c.vocab_size, " leaves no room for <unk>, <s> and </s>");

  const int64_t size = static_cast<int64_t>(file.size());
  const Layout layout = layout_of(c, c.shared_classifier, name);
  if (layout.total_bytes != size) {
    std::string hint;
    // A classifier's worth of difference usually means the shared-classifier flag is wrong.
    if (layout_of(c, !c.shared_classifier, name).total_bytes == size)
      hint = cat("; its size would fit a ", c.shared_classifier ? "separate" : "shared",
                 " classifier: is the header's classifier flag (the sign of vocab_size in the "
                 "legacy format) wrong?");
    if (size < layout.total_bytes)
      fail(name, " is truncated: its header (", c.describe(), ") needs ", layout.total_bytes,
           " bytes, the file has ", size, hint);
    fail(name, " has ", size - layout.total_bytes, " bytes more than its header (", c.describe(),
         ") accounts for (", layout.total_bytes, " bytes)", hint);
  }
  return c;
}

Llama2cVocab parse_llama2c_tokenizer(std::span<const uint8_t> file, int64_t vocab_size,
                                     const std::string& name) {
  if (file.size() >= 4 && std::memcmp(file.data(), "GGUF", 4) == 0)
    fail(name, " is a GGUF file, not a llama2.c tokenizer");
  if (file.size() < 4) fail(name, " is truncated: too short for a llama2.c tokenizer header");
  Llama2cVocab v;
  v.max_token_length = read_i32(file, 0);
  if (v.max_token_length <= 0)
    fail(name, ": max_token_length is ", v.max_token_length, " (must be positive)");

  size_t at = 4;
  for (int64_t id = 0; id < vocab_size; ++id) {
    if (at == file.size())
      fail(name, " holds only ", id, " tokens but the model's vocabulary has ", vocab_size,
           " (truncated, or the tokenizer of another model)");
    if (file.size() - at < 8) fail(name, " is truncated inside token ", id);
    const float score = read_f32(file, at);
    const int32_t len = read_i32(file, at + 4);
    at += 8;
    if (std::isnan(score)) fail(name, ": token ", id, " has a NaN score (corrupted file)");
    if (len < 0) fail(name, ": token ", id, " has a negative length ", len, " (corrupted file)");
    if (len > v.max_token_length)
      fail(name, ": token ", id, " is ", len, " bytes long, more than the file's max_token_length ",
           v.max_token_length, " (corrupted file)");
    if (file.size() - at < static_cast<size_t>(len))
      fail(name, " is truncated inside token ", id, " (", len, " bytes declared, ",
           file.size() - at, " left)");
    std::string piece(reinterpret_cast<const char*>(file.data() + at), static_cast<size_t>(len));
    at += static_cast<size_t>(len);

    // llama2.c spells the special tokens "<unk>", "\n<s>\n" and "\n</s>\n"; GGUF's llama
    // vocabulary has them at fixed ids 0, 1, 2 under their SentencePiece names.
    int32_t kind = kTokenNormal;
    if (id == 0) {
      piece = "<unk>";
      kind = kTokenUnknown;
    } else if (id == 1) {
      piece = "<s>";
      kind = kTokenControl;
    } else if (id == 2) {
      piece = "</s>";
      kind = kTokenControl;
    } else if (piece.empty()) {
      kind = kTokenControl;
    } else if (is_byte_piece(piece)) {
      kind = kTokenByte;
    }
    // llama2.c's export turned SentencePiece's U+2581 into plain spaces; turn them back.
    v.tokens.push_back(with_space_markers(piece));
    v.scores.push_back(score);
    v.types.push_back(kind);
  }
  if (at != file.size()) {
    // Count what follows, to tell a tokenizer of a larger vocabulary from trailing garbage.
    int64_t more = 0;
    size_t rest = at;
    while (file.size() - rest >= 8) {
      const int32_t len = read_i32(file, rest + 4);
      if (len < 0 || static_cast<size_t>(len) > file.size() - rest - 8) break;
      rest += 8 + static_cast<size_t>(len);
      ++more;
    }
    if (rest == file.size())
      fail(name, " holds ", vocab_size + more, " tokens but the model's vocabulary has ",
           vocab_size, " (the tokenizer of another model?)");
    fail(name, " has ", file.size() - at, " bytes after its ", vocab_size,
         " tokens that are not tokens (corrupted file, or the tokenizer of another model)");
  }
  return v;
}

gguf::Writer llama2c_to_gguf(std::span<const uint8_t> checkpoint, const std::string& checkpoint_name,
                             std::span<const uint8_t> tokenizer, const std::string& tokenizer_name,
                             const Llama2cOptions& options) {
  const Llama2cConfig c = parse_llama2c_config(checkpoint, checkpoint_name);
  const Llama2cVocab vocab = parse_llama2c_tokenizer(tokenizer, c.vocab_size, tokenizer_name);
  const Layout layout = layout_of(c, c.shared_classifier, checkpoint_name);
  if (options.context_length < 0 || options.context_length > 0xFFFFFFFFll)
    fail("context length ", options.context_length, " is out of range [1, 4294967295]");

  gguf::Writer w;
  // Keys in the order llama.cpp's converter writes them.
  w.set_strings("tokenizer.ggml.tokens", vocab.tokens);
  w.set_f32s("tokenizer.ggml.scores", vocab.scores);
  w.set_i32s("tokenizer.ggml.token_type", vocab.types);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", options.name);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  // "No such token" is -1 stored as uint32, as llama.cpp writes it. (The key's spelling is
  // llama.cpp's.)
  w.set_u32("tokenizer.ggml.seperator_token_id", 0xFFFFFFFFu);
  w.set_u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
  const int64_t ctx = options.context_length > 0 ? options.context_length : c.seq_len;
  w.set_u32("llama.context_length", static_cast<uint32_t>(ctx));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.set_u32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  // llama2.c rotates every dimension of a head.
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_size()));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);

  // Adds one tensor, in ggml's shape order (row length first), after checking that its floats
  // are finite: NaN or infinity in a weight means a corrupted checkpoint.
  auto add = [&](const std::string& tensor, Part part, int64_t layer, std::vector<int64_t> shape) {
    const int64_t n = layout.floats_per_layer[part];
    const size_t at = static_cast<size_t>(layout.offset[part]) +
                      static_cast<size_t>(layer < 0 ? 0 : layer * n) * 4;
    const uint8_t* data = checkpoint.data() + at;
    for (int64_t i = 0; i < n; ++i) {
      float x;
      std::memcpy(&x, data + i * 4, 4);
      if (!std::isfinite(x))
        fail(checkpoint_name, ": ", part_label(part, layer), " holds ", x, " at element ", i,
             " (corrupted checkpoint)");
    }
    w.add_tensor(tensor, TensorType::F32, std::move(shape), data, static_cast<size_t>(n) * 4);
  };

  const int64_t dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim(), vocab_n = c.vocab_size;
  add("token_embd.weight", kEmbedding, -1, {dim, vocab_n});
  add("output_norm.weight", kFinalNorm, -1, {dim});
  if (!c.shared_classifier)
    add("output.weight", kClassifier, -1, {dim, vocab_n});
  else if (!options.omit_shared_output)
    add("output.weight", kEmbedding, -1, {dim, vocab_n});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string blk = cat("blk.", i, ".");
    add(blk + "attn_q.weight", kWq, i, {dim, dim});
    add(blk + "attn_k.weight", kWk, i, {dim, kv_dim});
    add(blk + "attn_v.weight", kWv, i, {dim, kv_dim});
    add(blk + "attn_output.weight", kWo, i, {dim, dim});
    add(blk + "attn_norm.weight", kAttnNorm, i, {dim});
    add(blk + "ffn_gate.weight", kW1, i, {dim, hidden});
    add(blk + "ffn_down.weight", kW2, i, {hidden, dim});
    add(blk + "ffn_up.weight", kW3, i, {dim, hidden});
    add(blk + "ffn_norm.weight", kFfnNorm, i, {dim});
  }
  return w;
}

Llama2cConfig convert_llama2c(const std::string& checkpoint_path, const std::string& tokenizer_path,
                              const std::string& out_path, const Llama2cOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const std::string* input : {&checkpoint_path, &tokenizer_path})
    if (fs::exists(out_path, ec) && fs::equivalent(*input, out_path, ec))
      fail("the output ", out_path, " is the input ", *input, ": refusing to overwrite it");

  const MappedFile checkpoint(checkpoint_path);
  const MappedFile tokenizer(tokenizer_path);
  const gguf::Writer w =
      llama2c_to_gguf(checkpoint.bytes(), checkpoint_path, tokenizer.bytes(), tokenizer_path, options);

  write_gguf_atomically(w, out_path);
  return parse_llama2c_config(checkpoint.bytes(), checkpoint_path);
}

}  // namespace endless::convert
