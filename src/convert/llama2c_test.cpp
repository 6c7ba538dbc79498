#include "convert/llama2c.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "convert/token_types.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace endless::convert {
namespace {

using Bytes = std::vector<uint8_t>;

template <typename T>
void put(Bytes& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

Bytes read_all(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A small legacy checkpoint whose every float is distinct, so a tensor read from the wrong place
// shows. Dimensions: dim 8, hidden 12, 2 layers, 2 heads, 1 KV head, vocab 6, seq_len 4.
struct TinyCheckpoint {
  int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 6, seq_len = 4;
  bool separate_classifier = false;

  int32_t kv_dim() const { return dim / heads * kv_heads; }
  // Float counts of the legacy groups, in file order.
  std::vector<std::pair<std::string, int64_t>> groups() const {
    std::vector<std::pair<std::string, int64_t>> g = {
        {"embedding", int64_t{vocab} * dim},
        {"attn_norm", int64_t{layers} * dim},
        {"wq", int64_t{layers} * dim * dim},
        {"wk", int64_t{layers} * dim * kv_dim()},
        {"wv", int64_t{layers} * dim * kv_dim()},
        {"wo", int64_t{layers} * dim * dim},
        {"ffn_norm", int64_t{layers} * dim},
        {"w1", int64_t{layers} * dim * hidden},
        {"w2", int64_t{layers} * dim * hidden},
        {"w3", int64_t{layers} * dim * hidden},
        {"final_norm", dim},
        {"rope", int64_t{seq_len} * (dim / heads)},
    };
    if (separate_classifier) g.push_back({"classifier", int64_t{vocab} * dim});
    return g;
  }
  // The value stored at float index i of the weights (after the header).
  static float value(int64_t i) { return 0.001f * static_cast<float>(i) - 1.0f; }

  Bytes bytes() const {
    Bytes out;
    for (int32_t v : {dim, hidden, layers, heads, kv_heads, separate_classifier ? -vocab : vocab,
                      seq_len})
      put(out, v);
    int64_t i = 0;
    for (const auto& [name, n] : groups())
      for (int64_t k = 0; k < n; ++k) put(out, value(i++));
    return out;
  }
  // Float index where a group starts.
  int64_t start(const std::string& group) const {
    int64_t at = 0;
    for (const auto& [name, n] : groups()) {
      if (name == group) return at;
      at += n;
    }
    ADD_FAILURE() << "no group " << group;
    return 0;
  }
};

Bytes tiny_tokenizer(const std::vector<std::pair<std::string, float>>& pieces) {
  Bytes out;
  int32_t longest = 1;
  for (const auto& [piece, score] : pieces) longest = std::max<int32_t>(longest, piece.size());
  put(out, longest);
  for (const auto& [piece, score] : pieces) {
    put(out, score);
    put(out, static_cast<int32_t>(piece.size()));
    out.insert(out.end(), piece.begin(), piece.end());
  }
  return out;
}

Bytes six_token_tokenizer() {
  return tiny_tokenizer({{"<unk>", 0.0f}, {"\n<s>\n", 0.0f}, {"\n</s>\n", 0.0f},
                         {"<0x0A>", 0.0f}, {" a", -1.0f}, {"b c", -2.5f}});
}

gguf::File convert_in_memory(const Bytes& checkpoint, const Bytes& tokenizer,
                             const Llama2cOptions& options = {}) {
  return gguf::File::parse(
      llama2c_to_gguf(checkpoint, "model.bin", tokenizer, "tok.bin", options).to_bytes());
}

std::vector<float> floats_of(const gguf::TensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  std::memcpy(out.data(), t.data, out.size() * 4);
  return out;
}

// Expects `fn` to throw an endless::Error whose message contains `needle`.
template <typename Fn>
void expect_error(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to mention: " << needle;
  }
}

// ---- The real checkpoints in ../shared ----

TEST(Llama2c, Stories260KConvertsBitIdenticallyToReferenceGguf) {
  ENDLESS_REQUIRE_SHARED("models/llama2c/stories260K.bin");
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  const MappedFile bin(testing::shared_file("models/llama2c/stories260K.bin"));
  const MappedFile tok(testing::shared_file("models/llama2c/tok512.bin"));
  const gguf::File ref = gguf::File::open(testing::shared_file("models/stories260K.gguf"));

  const gguf::File got = gguf::File::parse(
      llama2c_to_gguf(bin.bytes(), "stories260K.bin", tok.bytes(), "tok512.bin").to_bytes());

  ASSERT_EQ(got.tensors().size(), ref.tensors().size());
  for (const auto& r : ref.tensors()) {
    const gguf::TensorInfo* t = got.tensor(r.name);
    ASSERT_NE(t, nullptr) << r.name;
    EXPECT_EQ(t->type, r.type) << r.name;
    EXPECT_EQ(t->shape, r.shape) << r.name;
    ASSERT_EQ(t->nbytes, r.nbytes) << r.name;
    EXPECT_EQ(std::memcmp(t->data, r.data, r.nbytes), 0) << r.name << " differs";
  }

  const auto* tokens = got.get_array("tokenizer.ggml.tokens");
  const auto* ref_tokens = ref.get_array("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  ASSERT_EQ(tokens->strings.size(), 512u);
  EXPECT_EQ(tokens->strings, ref_tokens->strings);
  for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
    const auto* a = got.get_array(key);
    const auto* b = ref.get_array(key);
    ASSERT_NE(a, nullptr) << key;
    ASSERT_EQ(a->elem, b->elem) << key;
    ASSERT_EQ(a->count, b->count) << key;
    EXPECT_EQ(std::memcmp(a->raw, b->raw, a->count * 4), 0) << key << " differs";
  }
  for (const char* key :
       {"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id", "llama.embedding_length", "llama.feed_forward_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.block_count",
        "llama.rope.dimension_count"})
    EXPECT_EQ(got.get_int(key), ref.get_int(key)) << key;
  EXPECT_EQ(got.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(got.get_string("general.architecture"), "llama");
  EXPECT_EQ(got.get_float("llama.attention.layer_norm_rms_epsilon"),
            ref.get_float("llama.attention.layer_norm_rms_epsilon"));
  // The context length is the checkpoint's seq_len (the reference was written with 2048).
  EXPECT_EQ(got.get_int("llama.context_length"), 512);
}

TEST(Llama2c, Stories260KWholeFileMatchesWithReferenceContextLength) {
  ENDLESS_REQUIRE_SHARED("models/llama2c/stories260K.bin");
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  const MappedFile bin(testing::shared_file("models/llama2c/stories260K.bin"));
  const MappedFile tok(testing::shared_file("models/llama2c/tok512.bin"));
  Llama2cOptions options;
  options.context_length = 2048;  // what the reference file records
  const Bytes got = llama2c_to_gguf(bin.bytes(), "bin", tok.bytes(), "tok", options).to_bytes();
  const Bytes ref = read_all(testing::shared_file("models/stories260K.gguf"));
  ASSERT_EQ(got.size(), ref.size());
  EXPECT_TRUE(got == ref) << "same size, different bytes";
}

TEST(Llama2c, BabyLlamaCharacterVocabularyAndSharedClassifier) {
  ENDLESS_REQUIRE_SHARED("models/llama2c/babyllama105.bin");
  const auto dir = testing::scratch_dir("babyllama");
  const auto out = (dir / "babyllama105.gguf").string();
  const Llama2cConfig c =
      convert_llama2c(testing::shared_file("models/llama2c/babyllama105.bin"),
                      testing::shared_file("models/llama2c/tok105.bin"), out);
  EXPECT_EQ(c.version, 0);
  EXPECT_TRUE(c.shared_classifier);

  const gguf::File f = gguf::File::open(out);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 128);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 352);
  EXPECT_EQ(f.get_int("llama.block_count"), 5);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_int("llama.context_length"), 256);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 16);
  EXPECT_EQ(f.tensors().size(), 3u + 5u * 9u);

  const auto* embd = f.tensor("token_embd.weight");
  const auto* output = f.tensor("output.weight");
  ASSERT_NE(embd, nullptr);
  ASSERT_NE(output, nullptr);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{128, 105}));
  ASSERT_EQ(output->nbytes, embd->nbytes);
  EXPECT_EQ(std::memcmp(output->data, embd->data, embd->nbytes), 0) << "shared classifier copied";
  EXPECT_EQ(f.tensor("blk.4.attn_k.weight")->shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(f.tensor("blk.4.ffn_down.weight")->shape, (std::vector<int64_t>{352, 128}));

  const auto& tokens = f.get_array("tokenizer.ggml.tokens")->strings;
  const auto* types = f.get_array("tokenizer.ggml.token_type");
  ASSERT_EQ(tokens.size(), 105u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(tokens[3], "\xe2\x96\x81");  // the space character, as SentencePiece spells it
  EXPECT_EQ(tokens[4], "e");
  EXPECT_EQ(types->element(0).as_int(), kTokenUnknown);
  EXPECT_EQ(types->element(1).as_int(), kTokenControl);
  for (uint64_t i = 3; i < types->count; ++i) {
    EXPECT_EQ(types->element(i).as_int(), kTokenNormal) << "token " << i << " " << tokens[i];
    EXPECT_EQ(tokens[i].find('\n'), std::string_view::npos) << "no newline piece: maps to <unk>";
  }
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_array("tokenizer.ggml.scores")->element(5).as_float()),
                  -2.0f);
}

TEST(Llama2c, AiDreamsConverts) {
  ENDLESS_REQUIRE_SHARED("models/llama2c/aidreams260K.bin");
  const MappedFile bin(testing::shared_file("models/llama2c/aidreams260K.bin"));
  const MappedFile tok(testing::shared_file("models/llama2c/aidreams-tok512.bin"));
  const gguf::File f = gguf::File::parse(
      llama2c_to_gguf(bin.bytes(), "aidreams260K.bin", tok.bytes(), "aidreams-tok512.bin")
          .to_bytes());
  EXPECT_EQ(f.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(f.get_int("llama.block_count"), 4);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 4);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_int("llama.context_length"), 128);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 16);
  EXPECT_EQ(f.tensor("blk.3.attn_v.weight")->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_NE(f.tensor("output.weight"), nullptr);
  EXPECT_EQ(f.tensor("blk.4.attn_q.weight"), nullptr);

  const auto& tokens = f.get_array("tokenizer.ggml.tokens")->strings;
  const auto* types = f.get_array("tokenizer.ggml.token_type");
  ASSERT_EQ(tokens.size(), 512u);
  for (int b = 0; b < 256; ++b) {
    char expect[8];
    std::snprintf(expect, sizeof expect, "<0x%02X>", b);
    EXPECT_EQ(tokens[3 + b], expect);
    EXPECT_EQ(types->element(3 + b).as_int(), kTokenByte);
  }
  EXPECT_EQ(tokens[262], "\xe2\x96\x81" "a");  // " a" in the llama2.c file
  EXPECT_EQ(types->element(262).as_int(), kTokenNormal);
}

// ---- Synthetic checkpoints: layout, options, formats ----

TEST(Llama2c, TensorsComeFromTheirPlaceInTheLegacyLayout) {
  TinyCheckpoint ck;
  const gguf::File f = convert_in_memory(ck.bytes(), six_token_tokenizer());
  const int64_t dim = ck.dim, kv = ck.kv_dim(), hidden = ck.hidden;
  struct Expect {
    std::string tensor, group;
    int64_t layer, per_layer;
    std::vector<int64_t> shape;
  };
  const std::vector<Expect> expects = {
      {"token_embd.weight", "embedding", 0, 0, {dim, ck.vocab}},
      {"output.weight", "embedding", 0, 0, {dim, ck.vocab}},
      {"output_norm.weight", "final_norm", 0, 0, {dim}},
      {"blk.1.attn_norm.weight", "attn_norm", 1, dim, {dim}},
      {"blk.1.attn_q.weight", "wq", 1, dim * dim, {dim, dim}},
      {"blk.1.attn_k.weight", "wk", 1, dim * kv, {dim, kv}},
      {"blk.0.attn_v.weight", "wv", 0, dim * kv, {dim, kv}},
      {"blk.1.attn_v.weight", "wv", 1, dim * kv, {dim, kv}},
      {"blk.1.attn_output.weight", "wo", 1, dim * dim, {dim, dim}},
      {"blk.1.ffn_norm.weight", "ffn_norm", 1, dim, {dim}},
      {"blk.1.ffn_gate.weight", "w1", 1, dim * hidden, {dim, hidden}},
      {"blk.1.ffn_down.weight", "w2", 1, dim * hidden, {hidden, dim}},
      {"blk.1.ffn_up.weight", "w3", 1, dim * hidden, {dim, hidden}},
  };
  for (const auto& e : expects) {
    const gguf::TensorInfo* t = f.tensor(e.tensor);
    ASSERT_NE(t, nullptr) << e.tensor;
    EXPECT_EQ(t->type, TensorType::F32);
    EXPECT_EQ(t->shape, e.shape) << e.tensor;
    const std::vector<float> v = floats_of(*t);
    const int64_t first = ck.start(e.group) + e.layer * e.per_layer;
    EXPECT_EQ(v.front(), TinyCheckpoint::value(first)) << e.tensor;
    EXPECT_EQ(v.back(), TinyCheckpoint::value(first + t->n_elements() - 1)) << e.tensor;
  }
  EXPECT_EQ(f.get_int("llama.context_length"), ck.seq_len);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), ck.dim / ck.heads);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), ck.kv_heads);
  EXPECT_EQ(f.tensors().size(), 3u + 9u * 2u);
}

TEST(Llama2c, SeparateClassifierBecomesOutputWeight) {
  TinyCheckpoint ck;
  ck.separate_classifier = true;
  const gguf::File f = convert_in_memory(ck.bytes(), six_token_tokenizer());
  const std::vector<float> out = floats_of(*f.tensor("output.weight"));
  EXPECT_EQ(out.front(), TinyCheckpoint::value(ck.start("classifier")));
  EXPECT_NE(std::memcmp(f.tensor("output.weight")->data, f.tensor("token_embd.weight")->data,
                        f.tensor("token_embd.weight")->nbytes),
            0);
  const Llama2cConfig c = parse_llama2c_config(ck.bytes(), "model.bin");
  EXPECT_FALSE(c.shared_classifier);
  EXPECT_EQ(c.vocab_size, ck.vocab);
}

TEST(Llama2c, SharedOutputCanBeLeftOutForTying) {
  TinyCheckpoint ck;
  Llama2cOptions options;
  options.omit_shared_output = true;
  options.name = "tiny";
  options.context_length = 99;
  const gguf::File f = convert_in_memory(ck.bytes(), six_token_tokenizer(), options);
  EXPECT_EQ(f.tensor("output.weight"), nullptr);
  EXPECT_NE(f.tensor("token_embd.weight"), nullptr);
  EXPECT_EQ(f.get_string("general.name"), "tiny");
  EXPECT_EQ(f.get_int("llama.context_length"), 99);

  // A separate classifier is never dropped.
  ck.separate_classifier = true;
  EXPECT_NE(convert_in_memory(ck.bytes(), six_token_tokenizer(), options).tensor("output.weight"),
            nullptr);
}

TEST(Llama2c, TokenizerPiecesKindsAndScores) {
  const Llama2cVocab v = parse_llama2c_tokenizer(
      tiny_tokenizer({{"<unk>", 0.0f}, {"\n<s>\n", 0.0f}, {"\n</s>\n", 0.0f}, {"<0x0A>", 0.0f},
                      {" a", -1.0f}, {"b c", -2.5f}, {"", -3.0f}, {"<0x0>", -4.0f}}),
      8, "tok.bin");
  EXPECT_EQ(v.tokens, (std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x0A>",
                                                "\xe2\x96\x81" "a", "b\xe2\x96\x81" "c", "",
                                                "<0x0>"}));
  EXPECT_EQ(v.types, (std::vector<int32_t>{kTokenUnknown, kTokenControl, kTokenControl, kTokenByte,
                                           kTokenNormal, kTokenNormal, kTokenControl,
                                           kTokenNormal}));
  EXPECT_EQ(v.scores[5], -2.5f);
  EXPECT_EQ(v.max_token_length, 6);
}

// Rewrites a legacy checkpoint in llama2.c's version-1 layout.
Bytes to_version1(const TinyCheckpoint& ck) {
  const Bytes legacy = ck.bytes();
  Bytes out;
  put<uint32_t>(out, 0x616b3432);
  put<int32_t>(out, 1);
  for (int32_t v : {ck.dim, ck.hidden, ck.layers, ck.heads, ck.kv_heads, ck.vocab, ck.seq_len})
    put(out, v);
  out.push_back(ck.separate_classifier ? 0 : 1);
  out.resize(256, 0);
  std::vector<std::string> order = {"attn_norm", "ffn_norm", "final_norm", "embedding", "wq",
                                    "wk",        "wv",       "wo",         "w1",        "w2",
                                    "w3"};
  if (ck.separate_classifier) order.push_back("classifier");
  for (const auto& group : order) {
    int64_t n = 0;
    for (const auto& [name, count] : ck.groups())
      if (name == group) n = count;
    const auto* from = legacy.data() + 28 + ck.start(group) * 4;
    out.insert(out.end(), from, from + n * 4);
  }
  return out;
}

TEST(Llama2c, Version1CheckpointGivesTheSameModel) {
  for (bool separate : {false, true}) {
    TinyCheckpoint ck;
    ck.separate_classifier = separate;
    const Bytes v1 = to_version1(ck);
    EXPECT_EQ(parse_llama2c_config(v1, "v1.bin").version, 1);
    const Bytes a =
        llama2c_to_gguf(ck.bytes(), "v0", six_token_tokenizer(), "tok").to_bytes();
    const Bytes b = llama2c_to_gguf(v1, "v1", six_token_tokenizer(), "tok").to_bytes();
    EXPECT_TRUE(a == b) << "separate classifier: " << separate;
  }
}

TEST(Llama2c, ConvertWritesFileAndRefusesToOverwriteItsInput) {
  const auto dir = testing::scratch_dir("llama2c-files");
  const auto bin = (dir / "m.bin").string(), tok = (dir / "t.bin").string();
  const Bytes ck = TinyCheckpoint{}.bytes(), tk = six_token_tokenizer();
  std::ofstream(bin, std::ios::binary).write(reinterpret_cast<const char*>(ck.data()), ck.size());
  std::ofstream(tok, std::ios::binary).write(reinterpret_cast<const char*>(tk.data()), tk.size());

  const auto out = (dir / "m.gguf").string();
  convert_llama2c(bin, tok, out);
  EXPECT_EQ(gguf::File::open(out).get_int("llama.embedding_length"), 8);
  expect_error([&] { convert_llama2c(bin, tok, bin); }, "refusing to overwrite");
  EXPECT_EQ(read_all(bin), ck) << "the input is untouched";
  expect_error([&] { convert_llama2c((dir / "absent.bin").string(), tok, out); }, "absent.bin");
  // A failed conversion leaves no output behind.
  const auto out2 = (dir / "never.gguf").string();
  expect_error([&] { convert_llama2c(tok, tok, out2); }, "");
  EXPECT_FALSE(std::filesystem::exists(out2));
  std::filesystem::remove_all(dir);
}

// ---- Rejection of broken input ----

TEST(Llama2c, EveryTruncationOfACheckpointIsRejected) {
  TinyCheckpoint ck;
  ck.separate_classifier = true;
  const Bytes full = ck.bytes();
  for (size_t len = 0; len < full.size(); ++len) {
    const Bytes cut(full.begin(), full.begin() + len);
    try {
      llama2c_to_gguf(cut, "model.bin", six_token_tokenizer(), "tok.bin");
      ADD_FAILURE() << "a checkpoint cut to " << len << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos)
          << len << ": " << e.what();
    }
  }
}

TEST(Llama2c, TruncatedRealCheckpointNamesTheSizes) {
  ENDLESS_REQUIRE_SHARED("models/llama2c/stories260K.bin");
  const MappedFile bin(testing::shared_file("models/llama2c/stories260K.bin"));
  const auto cut = bin.bytes().first(bin.size() - 1000);
  expect_error([&] { parse_llama2c_config(cut, "stories260K.bin"); },
               "stories260K.bin is truncated: its header (dim 64, hidden_dim 172, 5 layers, 8 "
               "heads, 4 KV heads, vocab 512, seq_len 512, shared classifier) needs 1056540 "
               "bytes, the file has 1055540");
}

TEST(Llama2c, ExtraBytesAndWrongClassifierFlagAreRejected) {
  TinyCheckpoint ck;
  Bytes longer = ck.bytes();
  longer.resize(longer.size() + 12, 0);
  expect_error([&] { parse_llama2c_config(longer, "m.bin"); }, "12 bytes more than its header");

  // A separate classifier's bytes behind a header that says "shared".
  TinyCheckpoint separate;
  separate.separate_classifier = true;
  Bytes flipped = separate.bytes();
  const int32_t positive = separate.vocab;
  std::memcpy(flipped.data() + 20, &positive, 4);
  expect_error([&] { parse_llama2c_config(flipped, "m.bin"); }, "would fit a separate classifier");
}

TEST(Llama2c, InconsistentHeadersAreRejected) {
  struct Case {
    size_t field;  // index of the int32 in the legacy header
    int32_t value;
    std::string message;
  };
  const std::vector<Case> cases = {
      {0, 0, "dim is 0"},
      {0, -8, "dim is -8"},
      {1, 0, "hidden_dim is 0"},
      {2, -1, "n_layers is -1"},
      {3, 3, "dim 8 is not a multiple of n_heads 3"},
      {4, 0, "n_kv_heads is 0"},
      {4, 4, "is not a multiple of n_kv_heads 4"},
      {3, 8, "head size 1 is odd"},
      {5, 2, "vocab_size 2"},
      {5, 0, "vocab_size is 0"},
      {6, 0, "seq_len is 0"},
      {0, 1 << 30, "overflow"},
      {2, 0x7fffffff, "bytes"},
  };
  for (const auto& c : cases) {
    Bytes b = TinyCheckpoint{}.bytes();
    std::memcpy(b.data() + c.field * 4, &c.value, 4);
    SCOPED_TRACE(c.message);
    expect_error([&] { parse_llama2c_config(b, "m.bin"); }, c.message);
  }
}

TEST(Llama2c, NonFiniteWeightsAreRejected) {
  TinyCheckpoint ck;
  Bytes b = ck.bytes();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t at = ck.start("w2") + ck.dim * ck.hidden + 5;  // layer 1 of w2
  std::memcpy(b.data() + 28 + at * 4, &nan, 4);
  expect_error([&] { convert_in_memory(b, six_token_tokenizer()); }, "w2 of layer 1 holds nan");
}

TEST(Llama2c, OtherFormatsAreNamed) {
  Bytes gguf_file = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
  gguf_file.resize(64, 0);
  expect_error([&] { parse_llama2c_config(gguf_file, "m.gguf"); }, "is a GGUF file");
  expect_error([&] { parse_llama2c_tokenizer(gguf_file, 6, "t.gguf"); }, "is a GGUF file");

  Bytes v2 = to_version1(TinyCheckpoint{});
  const int32_t two = 2;
  std::memcpy(v2.data() + 4, &two, 4);
  expect_error([&] { parse_llama2c_config(v2, "q80.bin"); }, "version 2");

  Bytes v1 = to_version1(TinyCheckpoint{});
  v1[36] = 7;
  expect_error([&] { parse_llama2c_config(v1, "v1.bin"); }, "shared-classifier flag is 7");
  expect_error([&] { parse_llama2c_config(Bytes(v1.begin(), v1.begin() + 100), "v1.bin"); },
               "shorter than its 256-byte header");
}

TEST(Llama2c, EveryTruncationOfATokenizerIsRejected) {
  const Bytes full = six_token_tokenizer();
  for (size_t len = 0; len < full.size(); ++len) {
    const Bytes cut(full.begin(), full.begin() + len);
    try {
      parse_llama2c_tokenizer(cut, 6, "tok.bin");
      ADD_FAILURE() << "a tokenizer cut to " << len << " bytes was accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(msg.find("truncated") != std::string::npos ||
                  msg.find("holds only") != std::string::npos)
          << len << ": " << msg;
    }
  }
}

TEST(Llama2c, CorruptedTokenizersAreRejected) {
  auto with_i32 = [](size_t at, int32_t v) {
    Bytes b = six_token_tokenizer();
    std::memcpy(b.data() + at, &v, 4);
    return b;
  };
  // Token 0 ("<unk>") sits at offset 4: score at 4, length at 8, bytes from 12.
  expect_error([&] { parse_llama2c_tokenizer(with_i32(0, 0), 6, "t"); }, "max_token_length is 0");
  expect_error([&] { parse_llama2c_tokenizer(with_i32(8, -3), 6, "t"); },
               "token 0 has a negative length -3");
  expect_error([&] { parse_llama2c_tokenizer(with_i32(8, 7), 6, "t"); },
               "token 0 is 7 bytes long, more than the file's max_token_length 6");
  Bytes overlong = with_i32(0, 1000);  // a generous maximum, and a last token past the end
  const int32_t long_len = 500;
  std::memcpy(overlong.data() + overlong.size() - 3 - 4, &long_len, 4);
  expect_error([&] { parse_llama2c_tokenizer(overlong, 6, "t"); },
               "truncated inside token 5 (500 bytes declared, 3 left)");
  Bytes nan_score = six_token_tokenizer();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan_score.data() + 4, &nan, 4);
  expect_error([&] { parse_llama2c_tokenizer(nan_score, 6, "t"); }, "NaN score");

  // Vocabulary size mismatches between model and tokenizer.
  expect_error([&] { parse_llama2c_tokenizer(six_token_tokenizer(), 7, "t"); },
               "holds only 6 tokens but the model's vocabulary has 7");
  expect_error([&] { parse_llama2c_tokenizer(six_token_tokenizer(), 4, "t"); },
               "holds 6 tokens but the model's vocabulary has 4");
  Bytes trailing = six_token_tokenizer();
  trailing.push_back(0);
  expect_error([&] { parse_llama2c_tokenizer(trailing, 6, "t"); }, "that are not tokens");
}

// Random damage to headers, lengths and pieces either converts or throws Error; it never crashes
// (run under the sanitizers to see reads out of bounds).
TEST(Llama2c, RandomCorruptionNeverCrashes) {
  std::mt19937 rng(12345);
  TinyCheckpoint ck;
  const Bytes checkpoint = ck.bytes(), tokenizer = six_token_tokenizer();
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    Bytes c = checkpoint, t = tokenizer;
    Bytes& target = trial % 2 == 0 ? c : t;
    // Header and length fields live near the start; damage there is what parsing must survive.
    const size_t span = std::min<size_t>(target.size(), trial % 2 == 0 ? 40 : target.size());
    for (int k = 0, n = 1 + static_cast<int>(rng() % 3); k < n; ++k)
      target[rng() % span] = static_cast<uint8_t>(rng());
    try {
      convert_in_memory(c, t);
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000) << "most corruptions are detected";
}

TEST(Llama2c, MismatchedRealTokenizerIsRejected) {
  ENDLESS_REQUIRE_SHARED("models/llama2c/babyllama105.bin");
  const MappedFile bin(testing::shared_file("models/llama2c/babyllama105.bin"));
  const MappedFile tok(testing::shared_file("models/llama2c/tok512.bin"));
  expect_error([&] { llama2c_to_gguf(bin.bytes(), "babyllama105.bin", tok.bytes(), "tok512.bin"); },
               "tok512.bin holds 512 tokens but the model's vocabulary has 105");
}

}  // namespace
}  // namespace endless::convert
