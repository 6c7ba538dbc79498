#include "convert/synth.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <numbers>
#include <random>
#include <thread>
#include <unordered_set>

#include "convert/token_types.h"
#include "convert/write_file.h"
#include "kernels/kernels.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace endless::convert {
namespace {

// Bounds that keep every product of sizes far inside int64 and the metadata inside uint32.
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxFf = int64_t{1} << 22;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxCtx = (int64_t{1} << 32) - 1;
// The whole model is built in memory before it is written.
constexpr int64_t kMaxModelBytes = int64_t{256} << 30;

constexpr int64_t kSpecialTokens = 3;  // <unk>, <s>, </s>
constexpr int64_t kMinVocab = kSpecialTokens + 256;

// ---- Random numbers ----

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char ch : s) {
    h ^= static_cast<uint8_t>(ch);
    h *= 0x100000001b3ull;
  }
  return h;
}

// Standard normal deviates by the Box-Muller transform over mt19937_64, whose output sequence
// the C++ standard fixes; std::normal_distribution's algorithm is left to each library.
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  float next() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    // Uniforms in (0, 1): 53 random bits, offset by half a step so log() never sees 0.
    const double u1 = (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    spare_ = static_cast<float>(r * std::sin(theta));
    have_spare_ = true;
    return static_cast<float>(r * std::cos(theta));
  }

 private:
  std::mt19937_64 rng_;
  float spare_ = 0;
  bool have_spare_ = false;
};

uint64_t tensor_seed(uint64_t seed, const std::string& name, const std::vector<int64_t>& shape) {
  uint64_t h = splitmix64(seed) ^ fnv1a64(name);
  for (int64_t d : shape) h = splitmix64(h ^ static_cast<uint64_t>(d));
  return splitmix64(h);
}

// ---- Vocabulary ----

// Common words of simple English stories, roughly by frequency: the source of the multi-character
// pieces. Each word contributes its space-prefixed prefixes ("▁t", "▁th", "▁the").
constexpr std::array kWords = {
    "the", "and", "to", "a", "was", "he", "she", "it", "they", "her", "his", "said", "of", "in",
    "with", "day", "one", "you", "I", "that", "so", "on", "time", "Lily", "big", "for", "play",
    "had", "but", "were", "very", "happy", "saw", "not", "Tim", "is", "little", "be", "all", "up",
    "mom", "friend", "friends", "went", "there", "once", "upon", "named", "wanted", "them", "what",
    "at", "see", "do", "have", "can", "like", "loved", "girl", "boy", "cat", "dog", "ball", "tree",
    "park", "sun", "bird", "fun", "too", "are", "my", "we", "me", "out", "him", "help", "toy",
    "find", "home", "looked", "then", "new", "came", "back", "good", "from", "this", "into",
    "felt", "sad", "smiled", "made", "Ben", "asked", "did", "no", "an", "could", "would", "around",
    "when", "your", "let", "got", "because", "every", "about", "how", "other", "red", "blue",
    "green", "water", "look", "run", "jump", "away", "thank", "sorry", "yes", "started", "found",
    "best", "nice", "over", "man", "car", "box", "many", "fish", "house", "tired", "small", "bed",
    "after", "before", "again", "always", "never", "know", "think", "make", "take", "come", "just",
    "down", "each", "some", "their", "will", "who", "where", "why", "shiny", "strong", "kind",
    "brave", "learned", "together", "Sue", "Max", "Anna", "Sam", "Mia", "Tom", "The", "One",
    "Once", "She", "He", "They", "It", "But", "Then", "When", "mommy", "daddy", "garden", "flower",
    "school", "book", "food", "cake", "eat", "sky", "rain", "snow", "warm", "cold", "fast", "slow",
    "open", "close", "sing", "dance", "laugh", "cry", "hug", "share", "world", "people", "thing",
    "things", "place", "night", "morning", "story", "end",
};

// Frequent word pieces that start inside words (no leading space).
constexpr std::array kInnerPieces = {
    "he", "in", "ing", "ed", "er", "re", "on", "an", "at", "en", "or", "es", "it", "ou", "ar",
    "is", "al", "le", "st", "nd", "ll", "ly", "ay", "ow", "om", "im", "id", "il", "ot", "ut",
    "ent", "ion", "ter", "ck", "ake", "ame", "ight", "ound", "ful", "ers", "est", "ie", "ee", "oo",
};

// Single characters, most frequent first; the rest of ASCII's printable characters follow.
constexpr std::string_view kFrequentLetters = "etaoinshrdlcumwfgypbvkjxqz";

std::string space_marked(std::string_view s) { return std::string(kSpaceMarker) + std::string(s); }

}  // namespace

SynthVocab synth_vocab(int64_t n) {
  if (n < kMinVocab)
    fail("a synthetic vocabulary needs at least ", kMinVocab,
         " tokens (<unk>, <s>, </s> and 256 byte tokens), not ", n);
  if (n > kMaxVocab) fail("vocabulary size ", n, " is larger than ", kMaxVocab);
  SynthVocab v;
  v.tokens.reserve(static_cast<size_t>(n));
  std::unordered_set<std::string> seen;
  auto add = [&](std::string piece, float score, int32_t kind) {
    if (static_cast<int64_t>(v.tokens.size()) >= n || !seen.insert(piece).second) return;
    v.tokens.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(kind);
  };
  add("<unk>", 0.0f, kTokenUnknown);
  add("<s>", 0.0f, kTokenControl);
  add("</s>", 0.0f, kTokenControl);
  for (int b = 0; b < 256; ++b) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    add(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">", 0.0f, kTokenByte);
  }

  // Single characters rank below every merged piece, as in SentencePiece's BPE vocabularies.
  std::vector<std::string> singles = {kSpaceMarker};
  for (char ch : kFrequentLetters) singles.emplace_back(1, ch);
  for (char ch : kFrequentLetters) singles.emplace_back(1, static_cast<char>(ch - 'a' + 'A'));
  for (char ch = '!'; ch <= '~'; ++ch)
    if (!std::isalpha(static_cast<unsigned char>(ch))) singles.emplace_back(1, ch);
  std::vector<std::string> pieces;
  std::unordered_set<std::string> in_pieces;
  auto piece = [&](std::string p) {
    if (in_pieces.insert(p).second) pieces.push_back(std::move(p));
  };
  // Words and inner pieces alternate, as word starts and word middles mix in a real vocabulary.
  for (size_t i = 0; i < std::max(kWords.size(), kInnerPieces.size()); ++i) {
    if (i < kWords.size()) {
      const std::string_view word = kWords[i];
      for (size_t len = 1; len <= word.size(); ++len) piece(space_marked(word.substr(0, len)));
    }
    if (i < kInnerPieces.size()) {
      const std::string_view inner = kInnerPieces[i];
      for (size_t len = 2; len <= inner.size(); ++len) piece(std::string(inner.substr(0, len)));
    }
  }

  // Letter strings of growing length, each after its prefix, for vocabularies of any size.
  const int64_t singles_n = static_cast<int64_t>(singles.size());
  const int64_t wanted = n - static_cast<int64_t>(v.tokens.size()) - singles_n;
  std::vector<std::string> level = {""};
  while (static_cast<int64_t>(pieces.size()) < wanted) {
    std::vector<std::string> next;
    for (const auto& stem : level)
      for (char ch = 'a'; ch <= 'z'; ++ch) next.push_back(stem + ch);
    for (const auto& s : next) {
      if (static_cast<int64_t>(pieces.size()) >= wanted) break;
      piece(space_marked(s));
      if (s.size() > 1) piece(s);
    }
    level = std::move(next);
  }

  const int64_t n_pieces = std::max<int64_t>(0, std::min<int64_t>(wanted, pieces.size()));
  for (size_t i = 0; i < singles.size(); ++i)
    add(singles[i], -static_cast<float>(n_pieces + static_cast<int64_t>(i)), kTokenNormal);
  for (int64_t i = 0; i < n_pieces; ++i)
    add(pieces[static_cast<size_t>(i)], -static_cast<float>(i), kTokenNormal);
  if (static_cast<int64_t>(v.tokens.size()) != n)
    fail("internal error: synthetic vocabulary has ", v.tokens.size(), " tokens, not ", n);
  return v;
}

std::vector<TensorType> synth_weight_types() {
  std::vector<TensorType> out;
  for (uint32_t id = 0; id < 64; ++id) {
    if (!tensor_type_info(id)) continue;
    const auto t = static_cast<TensorType>(id);
    // Q8_1 and Q8_K only hold activations inside dot products; models never store them.
    if (t == TensorType::Q8_1 || t == TensorType::Q8_K) continue;
    if (kernels::can_quantize(t)) out.push_back(t);
  }
  return out;
}

uint32_t llama_file_type(TensorType t) {
  switch (t) {
    case TensorType::F32: return 0;
    case TensorType::F16: return 1;
    case TensorType::Q4_0: return 2;
    case TensorType::Q4_1: return 3;
    case TensorType::Q8_0: return 7;
    case TensorType::Q5_0: return 8;
    case TensorType::Q5_1: return 9;
    case TensorType::Q2_K: return 10;
    case TensorType::Q3_K: return 12;  // Q3_K_M
    case TensorType::Q4_K: return 15;  // Q4_K_M
    case TensorType::Q5_K: return 17;  // Q5_K_M
    case TensorType::Q6_K: return 18;
    case TensorType::IQ2_XXS: return 19;
    case TensorType::IQ2_XS: return 20;
    case TensorType::IQ3_XXS: return 23;
    case TensorType::IQ1_S: return 24;
    case TensorType::IQ4_NL: return 25;
    case TensorType::IQ3_S: return 26;
    case TensorType::IQ2_S: return 28;
    case TensorType::IQ4_XS: return 30;
    case TensorType::IQ1_M: return 31;
    case TensorType::BF16: return 32;
    case TensorType::TQ1_0: return 36;
    case TensorType::TQ2_0: return 37;
    case TensorType::MXFP4: return 38;
    default: fail("no llama.cpp file type for weights of type ", type_name(t));
  }
}

void SynthSpec::validate() const {
  if (arch != "llama" && arch != "qwen2" && arch != "mistral")
    fail("architecture '", arch, "' is not one of llama, qwen2, mistral");
  auto in_range = [](const char* flag, int64_t v, int64_t hi) {
    if (v < 1 || v > hi) fail(flag, " ", v, " is out of range [1, ", hi, "]");
  };
  in_range("--dim", dim, kMaxDim);
  in_range("--layers", layers, kMaxLayers);
  in_range("--heads", heads, dim);
  in_range("--kv-heads", kv_heads, heads);
  in_range("--ff", ff, kMaxFf);
  in_range("--ctx", ctx, kMaxCtx);
  if (dim % heads != 0) fail("--dim ", dim, " is not a multiple of --heads ", heads);
  if (heads % kv_heads != 0) fail("--heads ", heads, " is not a multiple of --kv-heads ", kv_heads);
  if (head_dim() % 2 != 0)
    fail("the head dimension ", dim, "/", heads, " = ", head_dim(), " is odd; RoPE rotates pairs");
  if (vocab < kMinVocab || vocab > kMaxVocab)
    fail("--vocab ", vocab, " is out of range [", kMinVocab, ", ", kMaxVocab,
         "] (the vocabulary holds <unk>, <s>, </s> and 256 byte tokens)");
  if (!(rope_freq_base > 1.0f)) fail("rope frequency base ", rope_freq_base, " must exceed 1");
  if (threads < 0 || threads > 1024) fail("thread count ", threads, " is out of range [0, 1024]");
  if (!(rms_eps > 0.0f && rms_eps < 1.0f)) fail("RMS-norm epsilon ", rms_eps, " is not in (0, 1)");

  const auto types = synth_weight_types();
  if (std::find(types.begin(), types.end(), type) == types.end()) {
    std::string names;
    for (TensorType t : types) names += cat(names.empty() ? "" : ", ", type_name(t));
    fail("weights of type ", type_name(type), " cannot be written (supported: ", names, ")");
  }
  // Rows are dim long, except ffn_down's, which are ff long; quantized blocks may not span rows.
  const int64_t block = info(type).block_size;
  if (dim % block != 0)
    fail(type_name(type), " packs ", block, " values per block: --dim ", dim,
         " must be a multiple of ", block);
  if (ff % block != 0)
    fail(type_name(type), " packs ", block, " values per block: --ff ", ff,
         " must be a multiple of ", block, " (ffn_down's rows are ff long)");

  const int64_t kv_dim = kv_heads * head_dim();
  const int64_t per_layer = 2 * dim * dim + 2 * dim * kv_dim + 3 * dim * ff;
  const int64_t matrices = layers * per_layer + (tied_output ? 1 : 2) * vocab * dim;
  const int64_t bytes = matrices / block * static_cast<int64_t>(info(type).type_size);
  if (bytes > kMaxModelBytes)
    fail("the model would take ", bytes >> 30, " GiB; synthetic models are built in memory and "
         "limited to ", kMaxModelBytes >> 30, " GiB");
}

gguf::Writer synth_model(const SynthSpec& s) {
  s.validate();
  const SynthVocab vocab = synth_vocab(s.vocab);
  const std::string a = s.arch;
  const int64_t kv_dim = s.kv_heads * s.head_dim();

  gguf::Writer w;
  w.set_string("general.architecture", a);
  w.set_string("general.name", s.name.empty() ? cat("synthetic-", a, "-", s.dim) : s.name);
  w.set_u32(a + ".context_length", static_cast<uint32_t>(s.ctx));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(s.dim));
  w.set_u32(a + ".block_count", static_cast<uint32_t>(s.layers));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.ff));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(s.heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.kv_heads));
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", s.rms_eps);
  w.set_f32(a + ".rope.freq_base", s.rope_freq_base);
  w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(s.head_dim()));
  w.set_u32("general.file_type", llama_file_type(s.type));
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set_strings("tokenizer.ggml.tokens", vocab.tokens);
  w.set_f32s("tokenizer.ggml.scores", vocab.scores);
  w.set_i32s("tokenizer.ggml.token_type", vocab.types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  if (s.type != TensorType::F32) w.set_u32("general.quantization_version", 2);

  const int threads = s.threads > 0 ? s.threads
                                    : static_cast<int>(std::clamp<unsigned>(
                                          std::thread::hardware_concurrency(), 1, 16));
  ThreadPool pool(threads);

  // A tensor of `shape` (row length first) with values mean + stddev * N(0, 1), stored as F32
  // when it is 1-D and as the model's type otherwise.
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean, float stddev) {
    const TensorType type = shape.size() == 1 ? TensorType::F32 : s.type;
    const int64_t row_len = shape[0];
    const int64_t rows = shape.size() == 1 ? 1 : shape[1];
    const size_t row_bytes = row_size(type, row_len);
    std::vector<uint8_t> data(row_bytes * static_cast<size_t>(rows));
    const uint64_t seed = tensor_seed(s.seed, name, shape);
    // Each row has its own random stream, so rows can be drawn in parallel and the values do not
    // depend on the number of threads.
    pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
      std::vector<float> row(static_cast<size_t>(row_len));
      for (int64_t r = begin; r < end; ++r) {
        Normal normal(splitmix64(seed ^ static_cast<uint64_t>(r)));
        for (float& x : row) x = mean + stddev * normal.next();
        kernels::quantize_weights_row(type, row.data(), data.data() + static_cast<size_t>(r) * row_bytes,
                              row_len);
      }
    });
    w.add_tensor(name, type, std::move(shape), data.data(), data.size());
  };

  const float dim_scale = 1.0f / std::sqrt(static_cast<float>(s.dim));
  add("token_embd.weight", {s.dim, s.vocab}, 0.0f, 1.0f);
  add("output_norm.weight", {s.dim}, 1.0f, 0.1f);
  if (!s.tied_output) add("output.weight", {s.dim, s.vocab}, 0.0f, 3.0f * dim_scale);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = cat("blk.", l, ".");
    add(p + "attn_norm.weight", {s.dim}, 1.0f, 0.1f);
    add(p + "ffn_norm.weight", {s.dim}, 1.0f, 0.1f);
    add(p + "attn_q.weight", {s.dim, s.dim}, 0.0f, dim_scale);
    add(p + "attn_k.weight", {s.dim, kv_dim}, 0.0f, dim_scale);
    add(p + "attn_v.weight", {s.dim, kv_dim}, 0.0f, dim_scale);
    add(p + "attn_output.weight", {s.dim, s.dim}, 0.0f, dim_scale);
    if (s.arch == "qwen2") {
      add(p + "attn_q.bias", {s.dim}, 0.0f, 0.1f);
      add(p + "attn_k.bias", {kv_dim}, 0.0f, 0.1f);
      add(p + "attn_v.bias", {kv_dim}, 0.0f, 0.1f);
    }
    add(p + "ffn_gate.weight", {s.dim, s.ff}, 0.0f, dim_scale);
    add(p + "ffn_up.weight", {s.dim, s.ff}, 0.0f, dim_scale);
    add(p + "ffn_down.weight", {s.ff, s.dim}, 0.0f, 1.0f / std::sqrt(static_cast<float>(s.ff)));
  }
  return w;
}

void write_synth_model(const SynthSpec& spec, const std::string& path) {
  write_gguf_atomically(synth_model(spec), path);
}

}  // namespace endless::convert
