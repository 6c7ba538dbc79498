// The forward pass: batching does not change results, streaming policies are exact, and every
// weight type loads and runs.
#include "model/forward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "kernels/kernels.h"
#include "test_support.h"
#include "tiny_model.h"
#include "util/error.h"

namespace endless {
namespace {

using testing::TinyModelSpec;

std::shared_ptr<const Model> tiny(const TinyModelSpec& spec, const std::string& name) {
  const auto path = endless::testing::scratch_dir(name) / "model.gguf";
  endless::testing::write_tiny_model(spec, path.string());
  return Model::load(path.string());
}

std::vector<int32_t> random_tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  float d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

MemoryConfig full(int64_t n_ctx, int batch, TensorType kv = TensorType::F32) {
  MemoryConfig m;
  m.policy = "full";
  m.n_ctx = n_ctx;
  m.max_batch = batch;
  m.kv_type = kv;
  return m;
}

TEST(Forward, BatchedPrefillEqualsTokenByToken) {
  for (const char* arch : {"llama", "qwen2"}) {
    TinyModelSpec spec;
    spec.arch = arch;
    auto model = tiny(spec, std::string("batch-") + arch);
    Engine engine(model, 2);
    const auto tokens = random_tokens(40, spec.vocab, 7);
    auto a = engine.new_sequence(full(64, 64));
    const std::vector<float> batched = engine.eval(*a, tokens, true);
    auto b = engine.new_sequence(full(64, 1));
    std::vector<float> stepwise;
    for (int32_t t : tokens) {
      const auto& l = engine.eval(*b, std::span(&t, 1), false);
      stepwise.insert(stepwise.end(), l.begin(), l.end());
    }
    ASSERT_EQ(batched.size(), stepwise.size());
    EXPECT_LT(max_abs_diff(batched, stepwise), 1e-4f) << arch;
  }
}

TEST(Forward, ManySequencesInOneBatchEqualEachAlone) {
  TinyModelSpec spec;
  auto model = tiny(spec, "multi");
  Engine engine(model, 2);
  const auto t1 = random_tokens(9, spec.vocab, 1), t2 = random_tokens(5, spec.vocab, 2);
  auto s1 = engine.new_sequence(full(64, 16)), s2 = engine.new_sequence(full(64, 16));
  BatchPart parts[2] = {{s1.get(), t1, false}, {s2.get(), t2, true}};
  const std::vector<float> together = engine.forward(parts);
  auto a1 = engine.new_sequence(full(64, 16)), a2 = engine.new_sequence(full(64, 16));
  const std::vector<float> alone1 = engine.eval(*a1, t1, false);
  const std::vector<float> alone2 = engine.eval(*a2, t2, true);
  const size_t V = spec.vocab;
  ASSERT_EQ(together.size(), V * (1 + t2.size()));
  EXPECT_LT(max_abs_diff(std::span(together).first(V), alone1), 1e-5f);
  EXPECT_LT(max_abs_diff(std::span(together).subspan(V), alone2), 1e-5f);
}

// The threads split products by rows and the row-by-row steps between them by tokens
// (Engine::for_rows); neither may change a number. One, two and three threads, on a batch of
// two sequences (a prefill of 13 tokens and one of 6), then steps of one token each.
TEST(Forward, ThreadCountDoesNotChangeABit) {
  TinyModelSpec spec;
  spec.type = TensorType::Q4_0;
  auto model = tiny(spec, "threads");
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    Engine engine(model, threads);
    auto s1 = engine.new_sequence(full(64, 16)), s2 = engine.new_sequence(full(64, 16));
    const auto t1 = random_tokens(13, spec.vocab, 3), t2 = random_tokens(6, spec.vocab, 4);
    BatchPart prefill[2] = {{s1.get(), t1, true}, {s2.get(), t2, false}};
    std::vector<float> all = engine.forward(prefill);
    for (int step = 0; step < 4; ++step) {
      const int32_t a = (step * 5 + 1) % spec.vocab, b = (step * 11 + 2) % spec.vocab;
      BatchPart parts[2] = {{s1.get(), std::span(&a, 1), false}, {s2.get(), std::span(&b, 1), false}};
      const std::vector<float>& l = engine.forward(parts);
      all.insert(all.end(), l.begin(), l.end());
    }
    results.push_back(std::move(all));
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
}

// Several sequences decoding together (one token each, so their attention runs side by side,
// one part per thread) give exactly what the reference attention gives on the same batches, and
// what each sequence gives alone, after their sink caches have evicted. (Q8_0 weights: a token's
// row of a quantized product does not depend on the other rows, so "alone" is bit for bit too.)
TEST(Forward, SequencesDecodingSideBySideEqualReference) {
  TinyModelSpec spec;
  spec.type = TensorType::Q8_0;
  auto model = tiny(spec, "side-by-side");
  Engine fast(model, 2), ref(model, 2), alone(model, 2);
  fast.set_reference(false);
  ref.set_reference(true);
  alone.set_reference(false);
  MemoryConfig m;
  m.policy = "sink";
  m.n_sink = 2;
  m.window = 16;
  m.max_batch = 8;
  m.kv_type = TensorType::F16;
  const int n_seq = 5;
  std::vector<std::unique_ptr<Sequence>> a, b, c;
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < n_seq; ++s) {
    prompts.push_back(random_tokens(11 + 3 * s, spec.vocab, 40 + s));  // different lengths
    a.push_back(fast.new_sequence(m));
    b.push_back(ref.new_sequence(m));
    c.push_back(alone.new_sequence(m));
    fast.eval(*a.back(), prompts.back(), false);
    ref.eval(*b.back(), prompts.back(), false);
    alone.eval(*c.back(), prompts.back(), false);
  }
  const size_t V = spec.vocab;
  for (int step = 0; step < 12; ++step) {
    std::vector<std::vector<int32_t>> next(n_seq);
    std::vector<BatchPart> pa, pb;
    for (int s = 0; s < n_seq; ++s) {
      next[s] = {static_cast<int32_t>((step * 7 + s * 13) % spec.vocab)};
      pa.push_back({a[s].get(), next[s], false});
      pb.push_back({b[s].get(), next[s], false});
    }
    const std::vector<float> la = fast.forward(pa);
    const std::vector<float> lb = ref.forward(pb);
    ASSERT_EQ(la.size(), V * n_seq);
    EXPECT_EQ(la, lb) << "step " << step;
    for (int s = 0; s < n_seq; ++s) {
      const std::vector<float> lc = alone.eval(*c[s], next[s], false);
      EXPECT_TRUE(std::equal(lc.begin(), lc.end(), la.begin() + s * V)) << "step " << step << " seq " << s;
    }
  }
}

// The StreamingLLM exactness property: after any number of evictions, the sink cache's logits
// equal a fresh dense computation over the retained tokens at compacted positions. With one layer
// a token's key and value do not depend on its context, so the dense recomputation must agree to
// rounding; it checks that every retained key is seen at exactly its compacted position.
TEST(Forward, SinkEqualsDenseOverRetainedTokens) {
  TinyModelSpec spec;
  spec.layers = 1;
  auto model = tiny(spec, "sink-exact");
  Engine engine(model, 2);
  const int S = 4, W = 48;
  const auto tokens = random_tokens(700, spec.vocab, 11);
  MemoryConfig sink;
  sink.policy = "sink";
  sink.n_sink = S;
  sink.window = W;
  sink.max_batch = 13;  // odd batches: compaction happens mid-stream
  sink.kv_type = TensorType::F32;
  auto seq = engine.new_sequence(sink);
  std::vector<float> last;
  for (size_t i = 0; i < tokens.size(); i += 13) {
    const size_t n = std::min<size_t>(13, tokens.size() - i);
    last = engine.eval(*seq, std::span(tokens).subspan(i, n), false);
    const int64_t t = static_cast<int64_t>(i + n) - 1;  // position of the last token fed
    if (t < W || (i / 13) % 9 != 0) continue;
    std::vector<int32_t> retained(tokens.begin(), tokens.begin() + S);
    retained.insert(retained.end(), tokens.begin() + (t - (W - S) + 1), tokens.begin() + t + 1);
    auto dense = engine.new_sequence(full(W, W));
    const std::vector<float> want = engine.eval(*dense, retained, false);
    EXPECT_LT(max_abs_diff(last, want), 1e-4f) << "after " << t + 1 << " tokens";
  }
  EXPECT_EQ(seq->policy->retained(), W);
}

// A shift cache of 64 tokens takes at most 64 - keep tokens per batch; a longer prompt with the
// default batch size is split to fit, not refused.
TEST(Forward, ShiftCacheSplitsBatchesLargerThanItCanTake) {
  TinyModelSpec spec;
  auto model = tiny(spec, "shift-batch");
  Engine engine(model, 1);
  MemoryConfig m;
  m.policy = "shift";
  m.n_ctx = 64;
  m.n_keep = 4;
  m.max_batch = 512;
  auto seq = engine.new_sequence(m);
  EXPECT_EQ(seq->config.max_batch, 60);
  const auto tokens = random_tokens(300, spec.vocab, 5);
  const std::vector<float> logits = engine.eval(*seq, tokens, false);
  EXPECT_EQ(logits.size(), static_cast<size_t>(spec.vocab));
  EXPECT_EQ(seq->policy->n_seen(), 300);
  EXPECT_LE(seq->policy->retained(), 64);
}

TEST(Forward, FullCacheRefusesToOverflow) {
  TinyModelSpec spec;
  auto model = tiny(spec, "overflow");
  Engine engine(model, 1);
  auto seq = engine.new_sequence(full(8, 8));
  const auto tokens = random_tokens(9, spec.vocab, 3);
  EXPECT_THROW(engine.eval(*seq, tokens, false), Error);
}

// Every weight type against an F32 model holding the same (de-quantized) weights: what remains
// is the error of the quantized matmul itself, i.e. of quantizing the activations (to Q8_0 / Q8_K
// / F16 / BF16 as ggml does), which must stay small.
// A model of weight type t (spec.mixed for V and up when set) and its float equivalent: F32
// weights holding the very values the quantized ones decode to.
std::pair<std::shared_ptr<const Model>, std::shared_ptr<const Model>> with_float_equivalent(TinyModelSpec spec, TensorType t,
                                                                                              const std::string& name) {
  spec.type = TensorType::F32;
  spec.roundtrip = t;
  auto f32 = tiny(spec, name + "-f32");
  spec.type = t;
  spec.roundtrip = TensorType::F32;
  return {tiny(spec, name), f32};
}

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::abs(x));
  return m;
}

TEST(Forward, EveryWeightTypeMatchesItsFloatEquivalent) {
  TinyModelSpec spec;
  spec.dim = 256;
  spec.ff = 512;
  spec.heads = 4;
  const auto tokens = random_tokens(12, spec.vocab, 5);
  for (TensorType t : {TensorType::F16, TensorType::BF16, TensorType::Q8_0, TensorType::Q4_0,
                       TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q2_K,
                       TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
    const std::string name(type_name(t));
    const auto [model, ref_model] = with_float_equivalent(spec, t, "equiv-" + name);
    EXPECT_EQ(model->main_type(), t);
    Engine ref_engine(ref_model, 1), engine(model, 1);
    auto rs = ref_engine.new_sequence(full(32, 32));
    auto s = engine.new_sequence(full(32, 32));
    const std::vector<float> want = ref_engine.eval(*rs, tokens, false);
    const std::vector<float> got = engine.eval(*s, tokens, false);
    EXPECT_LT(max_abs_diff(got, want), 0.05f * max_abs(want)) << name;
  }
}

// Q/K/V and gate/up go through one parallel region when their weights share a type; a model
// whose V and up are of a wider type (as Q4_K_M's) runs those products on their own, and still
// computes what its float equivalent computes, with 1 thread and 2 alike.
TEST(Forward, MixedWeightTypesMatchTheirFloatEquivalent) {
  TinyModelSpec spec;
  spec.dim = 256;
  spec.ff = 512;
  const auto tokens = random_tokens(12, spec.vocab, 7);
  for (auto [main, wide] : {std::pair{TensorType::Q4_K, TensorType::Q6_K}, std::pair{TensorType::Q4_0, TensorType::Q8_0}}) {
    const std::string name = std::string(type_name(main)) + "-" + std::string(type_name(wide));
    spec.mixed = wide;
    const auto [model, ref_model] = with_float_equivalent(spec, main, "mixed-" + name);
    EXPECT_EQ(model->layer(0).wv.type, wide);
    EXPECT_EQ(model->layer(0).up.type, wide);
    EXPECT_EQ(model->layer(0).wq.type, main);
    Engine ref_engine(ref_model, 1), one(model, 1), two(model, 2);
    auto rs = ref_engine.new_sequence(full(32, 32));
    auto s1 = one.new_sequence(full(32, 32));
    auto s2 = two.new_sequence(full(32, 32));
    const std::vector<float> want = ref_engine.eval(*rs, tokens, false);
    const std::vector<float> got = one.eval(*s1, tokens, false);
    EXPECT_EQ(two.eval(*s2, tokens, false), got) << name;
    EXPECT_LT(max_abs_diff(got, want), 0.05f * max_abs(want)) << name;
  }
}

}  // namespace
}  // namespace endless

namespace endless {
namespace {

// The fast attention path against the reference loops, for every policy and both cache types.
void expect_fast_attention_equals_reference() {
  for (const char* arch : {"llama", "qwen2"}) {
    TinyModelSpec spec;
    spec.arch = arch;
    auto model = tiny(spec, std::string("fast-") + arch);
    Engine fast(model, 2), ref(model, 2);
    fast.set_reference(false);
    ref.set_reference(true);
    const auto tokens = random_tokens(300, spec.vocab, 17);
    for (const char* policy : {"full", "sink", "window", "shift"}) {
      for (TensorType kv : {TensorType::F32, TensorType::F16}) {
        MemoryConfig m;
        m.policy = policy;
        m.n_ctx = 320;
        m.window = 40;
        m.n_keep = 3;
        m.max_batch = 23;
        m.kv_type = kv;
        if (std::string(policy) == "shift") m.n_ctx = 64;
        auto a = fast.new_sequence(m);
        auto b = ref.new_sequence(m);
        const std::vector<float> la = fast.eval(*a, tokens, true);
        const std::vector<float> lb = ref.eval(*b, tokens, true);
        ASSERT_EQ(la.size(), lb.size());
        EXPECT_EQ(la, lb) << arch << " " << policy << " " << type_name(kv);
        // Single-token steps: the fast path splits each token's KV heads between the threads.
        for (int step = 0; step < 6; ++step) {
          const int32_t next = static_cast<int32_t>((step * 37 + 5) % spec.vocab);
          const std::vector<float> da = fast.eval(*a, std::span(&next, 1), false);
          const std::vector<float> db = ref.eval(*b, std::span(&next, 1), false);
          EXPECT_EQ(da, db) << arch << " " << policy << " " << type_name(kv) << " step " << step;
        }
      }
    }
  }
}

// Q4_0 matrices are packed for the AVX-512 tiles at load, and their rows in the file leave memory
// (MappedFile::drop). The packed copy gives the bits of the rows, and on another instruction set
// the rows are read again, from the file, with the same results: mapped or read into memory.
TEST(Forward, PackedQ4_0WeightsGiveTheBitsOfTheRows) {
  if (kernels::best_isa() != kernels::Isa::avx512) GTEST_SKIP() << "no AVX-512 here: nothing is packed";
  TinyModelSpec spec;
  spec.dim = 256;
  spec.ff = 512;
  spec.type = TensorType::Q4_0;
  const auto path = endless::testing::scratch_dir("packed-q4_0") / "model.gguf";
  endless::testing::write_tiny_model(spec, path.string());
  const auto tokens = random_tokens(12, spec.vocab, 9);
  const int32_t next = 7;
  const kernels::Isa saved = kernels::active_isa();
  for (Residency residency : {Residency::mapped, Residency::read}) {
    SCOPED_TRACE(residency == Residency::mapped ? "mapped" : "read");
    kernels::set_isa(kernels::Isa::avx2);
    EXPECT_EQ(Model::load(path.string(), residency)->layer(0).wq.packed, nullptr) << "packed without AVX-512";
    kernels::set_isa(kernels::Isa::avx512);
    const auto model = Model::load(path.string(), residency);
    for (const Weight* w : {&model->layer(0).wq, &model->layer(0).wk, &model->layer(1).down, &model->output()})
      EXPECT_NE(w->packed, nullptr);
    Engine engine(model, 2);
    std::vector<std::vector<float>> logits;
    for (kernels::Isa isa : {kernels::Isa::avx512, kernels::Isa::avx2}) {
      kernels::set_isa(isa);
      auto seq = engine.new_sequence(full(32, 32));
      logits.push_back(engine.eval(*seq, tokens, false));  // prefill: tiles of 8 tokens and of 4
      logits.push_back(engine.eval(*seq, std::span(&next, 1), false));  // decode
    }
    EXPECT_EQ(logits[0], logits[2]);
    EXPECT_EQ(logits[1], logits[3]);
  }
  kernels::set_isa(saved);
}

// F32 and BF16 matrices that the file puts off a 64-byte boundary (GGUF aligns to 32) are copied
// at load, under AVX-512, to memory that starts on one; the copy holds the file's bytes, and the
// model gives the logits of one loaded without it (under AVX2, which copies nothing).
TEST(Forward, FloatMatricesOffCacheLinesAreCopiedAlignedWithTheirBytes) {
  if (kernels::best_isa() != kernels::Isa::avx512) GTEST_SKIP() << "no AVX-512 here: nothing is copied";
  const kernels::Isa saved = kernels::active_isa();
  for (TensorType type : {TensorType::F32, TensorType::BF16}) {
    TinyModelSpec spec;
    spec.dim = 128;
    spec.ff = 320;
    spec.type = type;
    const auto path = endless::testing::scratch_dir("aligned-copy") / cat(type_name(type), ".gguf");
    // Whether the matrices sit on 64-byte boundaries depends on the length of the metadata before
    // them: a few vocabulary sizes give both cases.
    for (spec.vocab = 128; spec.vocab < 136; ++spec.vocab) {
      endless::testing::write_tiny_model(spec, path.string());
      const gguf::File f = gguf::File::open(path.string());
      if (reinterpret_cast<uintptr_t>(f.tensor("blk.0.attn_q.weight")->data) % 64 != 0) break;
    }
    const auto tokens = random_tokens(10, spec.vocab, 4);
    const int32_t next = 3;
    for (Residency residency : {Residency::mapped, Residency::read}) {
      SCOPED_TRACE(cat(type_name(type), residency == Residency::mapped ? " mapped" : " read"));
      kernels::set_isa(kernels::Isa::avx2);
      const auto plain = Model::load(path.string(), residency);
      kernels::set_isa(kernels::Isa::avx512);
      const auto copied = Model::load(path.string(), residency);
      const gguf::File& f = plain->file();
      int off_line = 0;
      for (const auto& [plain_w, copied_w, name] :
           {std::tuple{&plain->layer(0).wq, &copied->layer(0).wq, "blk.0.attn_q.weight"},
            std::tuple{&plain->layer(1).down, &copied->layer(1).down, "blk.1.ffn_down.weight"},
            std::tuple{&plain->layer(1).up, &copied->layer(1).up, "blk.1.ffn_up.weight"}}) {
        const auto* t = f.tensor(name);
        ASSERT_NE(t, nullptr) << name;
        const size_t n = row_size(type, plain_w->n_in) * static_cast<size_t>(plain_w->n_out);
        off_line += reinterpret_cast<uintptr_t>(t->data) % 64 != 0;
        EXPECT_EQ(reinterpret_cast<uintptr_t>(copied_w->data) % 64, 0u) << name;
        EXPECT_EQ(std::memcmp(copied_w->data, t->data, n), 0) << name;
        EXPECT_EQ(plain_w->data, static_cast<const void*>(t->data)) << name << ": copied without AVX-512";
      }
      EXPECT_GT(off_line, 0) << "the test file should put some matrices off a 64-byte boundary";
      std::vector<std::vector<float>> logits;
      for (const auto& model : {plain, copied}) {
        Engine engine(model, 2);
        auto seq = engine.new_sequence(full(32, 32));
        logits.push_back(engine.eval(*seq, tokens, false));
        logits.push_back(engine.eval(*seq, std::span(&next, 1), false));
      }
      EXPECT_EQ(logits[0], logits[2]);
      EXPECT_EQ(logits[1], logits[3]);
    }
  }
  kernels::set_isa(saved);
}

// On every instruction set the CPU has: each has its own score and value loops.
TEST(Forward, FastAttentionEqualsReference) {
  const kernels::Isa saved = kernels::active_isa();
  for (kernels::Isa isa : {kernels::Isa::scalar, kernels::Isa::avx2, kernels::Isa::avx512}) {
    if (isa > kernels::best_isa()) continue;
    SCOPED_TRACE(kernels::isa_name(isa));
    kernels::set_isa(isa);
    expect_fast_attention_equals_reference();
  }
  kernels::set_isa(saved);
}

}  // namespace
}  // namespace endless
