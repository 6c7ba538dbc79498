#include "convert/synth.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>

#include "convert/token_types.h"
#include "kernels/kernels.h"
#include "test_support.h"
#include "util/error.h"

namespace endless::convert {
namespace {

// Small enough to build for every weight type quickly; dims are multiples of 256 so the K-quants
// fit.
SynthSpec small_spec(const std::string& arch, TensorType type) {
  SynthSpec s;
  s.arch = arch;
  s.dim = 256;
  s.layers = 2;
  s.heads = 4;
  s.kv_heads = 2;
  s.ff = 512;
  s.vocab = 300;
  s.ctx = 128;
  s.type = type;
  s.seed = 7;
  return s;
}

gguf::File build(const SynthSpec& s) { return gguf::File::parse(synth_model(s).to_bytes()); }

std::vector<float> values_of(const gguf::TensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  kernels::dequantize_row(t.type, t.data, out.data(), t.n_elements());
  return out;
}

double rms(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += double(x) * x;
  return std::sqrt(sum / v.size());
}

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

TEST(Synth, SupportsTheUsualWeightTypes) {
  const auto types = synth_weight_types();
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                       TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K})
    EXPECT_NE(std::find(types.begin(), types.end(), t), types.end()) << type_name(t);
  EXPECT_EQ(std::find(types.begin(), types.end(), TensorType::Q8_K), types.end());
  EXPECT_EQ(std::find(types.begin(), types.end(), TensorType::Q8_1), types.end());
}

TEST(Synth, EveryTypeRoundTripsWithMetadataShapesAndTypes) {
  for (const char* arch : {"llama", "qwen2", "mistral"}) {
    for (TensorType type : synth_weight_types()) {
      SCOPED_TRACE(std::string(arch) + " " + std::string(type_name(type)));
      const SynthSpec s = small_spec(arch, type);
      const gguf::File f = build(s);
      const std::string a = arch;
      EXPECT_EQ(f.get_string("general.architecture"), a);
      EXPECT_EQ(f.get_string("general.name"), "synthetic-" + a + "-256");
      EXPECT_EQ(f.get_int(a + ".embedding_length"), 256);
      EXPECT_EQ(f.get_int(a + ".block_count"), 2);
      EXPECT_EQ(f.get_int(a + ".feed_forward_length"), 512);
      EXPECT_EQ(f.get_int(a + ".attention.head_count"), 4);
      EXPECT_EQ(f.get_int(a + ".attention.head_count_kv"), 2);
      EXPECT_EQ(f.get_int(a + ".context_length"), 128);
      EXPECT_EQ(f.get_int(a + ".rope.dimension_count"), 64);
      EXPECT_FLOAT_EQ(static_cast<float>(*f.get_float(a + ".rope.freq_base")), 10000.0f);
      EXPECT_FLOAT_EQ(static_cast<float>(*f.get_float(a + ".attention.layer_norm_rms_epsilon")),
                      1e-5f);
      EXPECT_EQ(f.get_int("general.file_type"), llama_file_type(type));
      EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
      EXPECT_EQ(f.get_array("tokenizer.ggml.tokens")->strings.size(), 300u);
      EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
      EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 2);
      EXPECT_EQ(f.get_int("tokenizer.ggml.unknown_token_id"), 0);

      const bool qwen = a == "qwen2";
      EXPECT_EQ(f.tensors().size(), 3u + 2u * (qwen ? 12u : 9u));
      for (const auto& t : f.tensors()) {
        if (t.shape.size() == 1)
          EXPECT_EQ(t.type, TensorType::F32) << t.name << ": 1-D tensors stay F32";
        else
          EXPECT_EQ(t.type, type) << t.name << ": every 2-D weight takes the type";
      }
      EXPECT_EQ(f.tensor("token_embd.weight")->shape, (std::vector<int64_t>{256, 300}));
      EXPECT_EQ(f.tensor("output.weight")->shape, (std::vector<int64_t>{256, 300}));
      EXPECT_EQ(f.tensor("output_norm.weight")->shape, (std::vector<int64_t>{256}));
      EXPECT_EQ(f.tensor("blk.1.attn_q.weight")->shape, (std::vector<int64_t>{256, 256}));
      EXPECT_EQ(f.tensor("blk.1.attn_k.weight")->shape, (std::vector<int64_t>{256, 128}));
      EXPECT_EQ(f.tensor("blk.1.attn_v.weight")->shape, (std::vector<int64_t>{256, 128}));
      EXPECT_EQ(f.tensor("blk.1.attn_output.weight")->shape, (std::vector<int64_t>{256, 256}));
      EXPECT_EQ(f.tensor("blk.1.ffn_gate.weight")->shape, (std::vector<int64_t>{256, 512}));
      EXPECT_EQ(f.tensor("blk.1.ffn_up.weight")->shape, (std::vector<int64_t>{256, 512}));
      EXPECT_EQ(f.tensor("blk.1.ffn_down.weight")->shape, (std::vector<int64_t>{512, 256}));
      EXPECT_EQ(f.tensor("blk.1.attn_norm.weight")->shape, (std::vector<int64_t>{256}));
      EXPECT_EQ(f.tensor("blk.1.ffn_norm.weight")->shape, (std::vector<int64_t>{256}));
      if (qwen) {
        EXPECT_EQ(f.tensor("blk.1.attn_q.bias")->shape, (std::vector<int64_t>{256}));
        EXPECT_EQ(f.tensor("blk.1.attn_k.bias")->shape, (std::vector<int64_t>{128}));
        EXPECT_EQ(f.tensor("blk.1.attn_v.bias")->shape, (std::vector<int64_t>{128}));
      } else {
        EXPECT_EQ(f.tensor("blk.0.attn_q.bias"), nullptr);
      }
      EXPECT_EQ(f.tensor("blk.2.attn_q.weight"), nullptr);
    }
  }
}

TEST(Synth, QuantizedModelsHoldTheF32ModelsValues) {
  const gguf::File ref = build(small_spec("llama", TensorType::F32));
  // Relative RMS error bounds: loose enough for each format's precision, tight enough to catch
  // a wrong layout or unrelated values.
  const std::vector<std::pair<TensorType, double>> bounds = {
      {TensorType::F16, 1e-3},  {TensorType::BF16, 1e-2}, {TensorType::Q8_0, 1e-2},
      {TensorType::Q6_K, 0.05}, {TensorType::Q5_K, 0.08}, {TensorType::Q4_K, 0.15},
      {TensorType::Q4_0, 0.15}, {TensorType::Q3_K, 0.3},  {TensorType::Q2_K, 0.6}};
  for (const auto& [type, bound] : bounds) {
    if (!kernels::can_quantize(type)) continue;
    const gguf::File q = build(small_spec("llama", type));
    for (const char* name : {"token_embd.weight", "blk.1.ffn_down.weight", "output.weight"}) {
      const auto want = values_of(*ref.tensor(name));
      const auto got = values_of(*q.tensor(name));
      ASSERT_EQ(want.size(), got.size());
      std::vector<float> diff(want.size());
      for (size_t i = 0; i < want.size(); ++i) diff[i] = got[i] - want[i];
      EXPECT_LT(rms(diff) / rms(want), bound) << type_name(type) << " " << name;
    }
    // 1-D tensors are the same floats.
    const auto* a = ref.tensor("blk.0.attn_norm.weight");
    const auto* b = q.tensor("blk.0.attn_norm.weight");
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << type_name(type);
  }
}

TEST(Synth, DeterministicForASeed) {
  SynthSpec s = small_spec("qwen2", TensorType::Q4_K);
  const auto a = synth_model(s).to_bytes();
  const auto b = synth_model(s).to_bytes();
  EXPECT_TRUE(a == b) << "the same spec gave different files";
  s.seed = 8;
  const auto c = synth_model(s).to_bytes();
  ASSERT_EQ(a.size(), c.size());
  EXPECT_FALSE(a == c) << "another seed gave the same weights";

  // The thread count does not change the weights.
  SynthSpec one = small_spec("llama", TensorType::Q6_K), three = one;
  one.threads = 1;
  three.threads = 3;
  EXPECT_TRUE(synth_model(one).to_bytes() == synth_model(three).to_bytes());

  // A deeper model shares its first layers with a shallower one of the same seed.
  SynthSpec shallow = small_spec("llama", TensorType::F32), deep = shallow;
  deep.layers = 3;
  const gguf::File fs = build(shallow), fd = build(deep);
  const auto* x = fs.tensor("blk.1.attn_k.weight");
  const auto* y = fd.tensor("blk.1.attn_k.weight");
  ASSERT_EQ(x->nbytes, y->nbytes);
  EXPECT_EQ(std::memcmp(x->data, y->data, x->nbytes), 0);
}

TEST(Synth, WeightStatisticsFollowTheRecipe) {
  SynthSpec s = small_spec("qwen2", TensorType::F32);
  s.vocab = 2048;
  const gguf::File f = build(s);
  auto stats = [&](const char* name) {
    const auto v = values_of(*f.tensor(name));
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    double var = 0;
    for (float x : v) var += (x - mean) * (x - mean);
    return std::pair(mean, std::sqrt(var / v.size()));
  };
  auto expect_stats = [&](const char* name, double mean, double stddev) {
    const auto [m, sd] = stats(name);
    EXPECT_NEAR(m, mean, 0.1 * stddev + 0.01) << name;
    EXPECT_NEAR(sd, stddev, 0.1 * stddev) << name;
  };
  expect_stats("token_embd.weight", 0.0, 1.0);
  expect_stats("output.weight", 0.0, 3.0 / 16.0);
  expect_stats("output_norm.weight", 1.0, 0.1);
  expect_stats("blk.0.attn_q.weight", 0.0, 1.0 / 16.0);
  expect_stats("blk.0.ffn_down.weight", 0.0, 1.0 / std::sqrt(512.0));
  expect_stats("blk.1.attn_q.bias", 0.0, 0.1);
}

// The final projection of a normalized hidden state gives peaked distributions: the most likely
// token holds a good share of the probability, far above uniform.
TEST(Synth, OutputLogitsAreSharp) {
  SynthSpec s = small_spec("llama", TensorType::F32);
  s.vocab = 4096;
  const gguf::File f = build(s);
  const auto out = values_of(*f.tensor("output.weight"));
  const auto embd = values_of(*f.tensor("token_embd.weight"));
  const int64_t dim = s.dim;
  double mean_top = 0;
  const int probes = 16;
  for (int p = 0; p < probes; ++p) {
    // A token embedding, RMS-normalized, stands in for the last hidden state.
    std::vector<float> h(embd.begin() + p * dim, embd.begin() + (p + 1) * dim);
    const double r = rms(h);
    for (float& x : h) x = static_cast<float>(x / r);
    std::vector<double> logits(static_cast<size_t>(s.vocab));
    for (int64_t v = 0; v < s.vocab; ++v) {
      double dot = 0;
      for (int64_t i = 0; i < dim; ++i) dot += double(out[v * dim + i]) * h[i];
      logits[v] = dot;
    }
    const double mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (double l : logits) z += std::exp(l - mx);
    mean_top += 1.0 / z;
  }
  mean_top /= probes;
  EXPECT_GT(mean_top, 0.05) << "top-token probability; uniform would be " << 1.0 / s.vocab;
}

TEST(Synth, VocabularyIsUsableByASentencePieceTokenizer) {
  for (int64_t n : {259, 300, 512, 5000, 40000}) {
    SCOPED_TRACE(n);
    const SynthVocab v = synth_vocab(n);
    ASSERT_EQ(v.tokens.size(), static_cast<size_t>(n));
    ASSERT_EQ(v.scores.size(), static_cast<size_t>(n));
    ASSERT_EQ(v.types.size(), static_cast<size_t>(n));
    EXPECT_EQ(v.tokens[0], "<unk>");
    EXPECT_EQ(v.tokens[1], "<s>");
    EXPECT_EQ(v.tokens[2], "</s>");
    EXPECT_EQ(v.types[0], kTokenUnknown);
    EXPECT_EQ(v.types[1], kTokenControl);
    EXPECT_EQ(v.types[2], kTokenControl);
    EXPECT_EQ(v.tokens[3], "<0x00>");
    EXPECT_EQ(v.tokens[3 + 0x0A], "<0x0A>");
    EXPECT_EQ(v.tokens[258], "<0xFF>");
    for (int i = 3; i < 259; ++i) EXPECT_EQ(v.types[i], kTokenByte);

    const std::set<std::string> all(v.tokens.begin(), v.tokens.end());
    EXPECT_EQ(all.size(), v.tokens.size()) << "tokens are unique";
    for (size_t i = 259; i < v.tokens.size(); ++i) {
      const std::string& t = v.tokens[i];
      EXPECT_EQ(v.types[i], kTokenNormal) << t;
      EXPECT_FALSE(t.empty());
      EXPECT_TRUE(std::isfinite(v.scores[i]));
      // Every multi-character piece is reachable by merging: its prefix, one character shorter,
      // is a token too.
      const size_t last = t.size() - 1;
      const size_t cut = t.starts_with(kSpaceMarker) && t.size() == 4 ? 0 : last;
      if (cut > 0 && t != kSpaceMarker) {
        EXPECT_TRUE(all.count(t.substr(0, cut))) << "prefix of " << t;
        EXPECT_TRUE(all.count(t.substr(cut))) << "last character of " << t;
      }
    }
  }
  const SynthVocab v = synth_vocab(512);
  auto has = [&](const std::string& t) {
    return std::find(v.tokens.begin(), v.tokens.end(), t) != v.tokens.end();
  };
  EXPECT_TRUE(has("\xe2\x96\x81"));
  EXPECT_TRUE(has("e"));
  EXPECT_TRUE(has("\xe2\x96\x81the"));
  EXPECT_TRUE(has("ing"));
  EXPECT_TRUE(has("."));
  expect_error([] { synth_vocab(258); }, "at least 259");
}

TEST(Synth, TiedOutputAndNamesAndOptions) {
  SynthSpec s = small_spec("llama", TensorType::Q8_0);
  s.tied_output = true;
  s.name = "bench";
  s.rope_freq_base = 500000.0f;
  const gguf::File f = build(s);
  EXPECT_EQ(f.tensor("output.weight"), nullptr);
  EXPECT_EQ(f.get_string("general.name"), "bench");
  EXPECT_FLOAT_EQ(static_cast<float>(*f.get_float("llama.rope.freq_base")), 500000.0f);
  EXPECT_EQ(f.get_int("general.quantization_version"), 2);
  EXPECT_FALSE(build(small_spec("llama", TensorType::F32)).get_int("general.quantization_version"));
}

TEST(Synth, InvalidSpecsAreRejected) {
  auto with = [](auto change) {
    SynthSpec s = small_spec("llama", TensorType::F32);
    change(s);
    return s;
  };
  struct Case {
    SynthSpec spec;
    std::string message;
  };
  const std::vector<Case> cases = {
      {with([](SynthSpec& s) { s.arch = "gpt2"; }), "architecture 'gpt2'"},
      {with([](SynthSpec& s) { s.dim = 0; }), "--dim 0 is out of range"},
      {with([](SynthSpec& s) { s.layers = -1; }), "--layers -1"},
      {with([](SynthSpec& s) { s.heads = 3; }), "--dim 256 is not a multiple of --heads 3"},
      {with([](SynthSpec& s) { s.kv_heads = 3; }), "--heads 4 is not a multiple of --kv-heads 3"},
      {with([](SynthSpec& s) { s.kv_heads = 8; }), "--kv-heads 8 is out of range [1, 4]"},
      {with([](SynthSpec& s) { s.heads = 256; s.kv_heads = 1; }), "head dimension"},
      {with([](SynthSpec& s) { s.dim = 258; s.heads = 2; s.kv_heads = 1; }), "odd"},
      {with([](SynthSpec& s) { s.vocab = 100; }), "--vocab 100 is out of range [259"},
      {with([](SynthSpec& s) { s.ctx = 0; }), "--ctx 0"},
      {with([](SynthSpec& s) { s.type = TensorType::Q8_K; }), "Q8_K cannot be written"},
      {with([](SynthSpec& s) { s.type = TensorType::Q4_K; s.dim = 128; s.heads = 2; s.kv_heads = 1; }),
       "--dim 128 must be a multiple of 256"},
      {with([](SynthSpec& s) { s.type = TensorType::Q4_0; s.ff = 100; }),
       "--ff 100 must be a multiple of 32"},
      {with([](SynthSpec& s) { s.dim = 1 << 20; s.heads = 16; s.kv_heads = 16; s.layers = 4000; }),
       "GiB"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message);
    expect_error([&] { synth_model(c.spec); }, c.message);
  }
}

TEST(Synth, WritesAFile) {
  const auto dir = endless::testing::scratch_dir("synth");
  const auto path = (dir / "m.gguf").string();
  const SynthSpec s = small_spec("mistral", TensorType::F16);
  write_synth_model(s, path);
  const gguf::File f = gguf::File::open(path);
  EXPECT_EQ(f.get_string("general.architecture"), "mistral");
  EXPECT_EQ(f.tensor("blk.0.attn_q.weight")->type, TensorType::F16);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace endless::convert
