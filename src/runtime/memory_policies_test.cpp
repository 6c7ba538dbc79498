// (In runtime: it feeds sequences through FeedbackEval and the streaming evaluation.)
// sirllm and infllm through the real forward pass: they reduce to `sink` when they keep nothing
// extra, the fast attention path equals the reference with their hooks (retrieval, attention
// mass) in play, snapshots continue exactly, feedback reaches them, and block memory stays in its
// RAM budget with the rest on disk.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "memory/infllm.h"
#include "memory/sirllm.h"
#include "model/forward.h"
#include "model/snapshot.h"
#include "runtime/policy_feedback.h"
#include "runtime/stream_eval.h"
#include "test_support.h"
#include "tiny_model.h"

namespace endless {
namespace {

using testing::TinyModelSpec;

std::shared_ptr<const Model> tiny_model(const TinyModelSpec& spec, const std::string& name) {
  const auto path = endless::testing::scratch_dir(name) / "model.gguf";
  endless::testing::write_tiny_model(spec, path.string());
  return Model::load(path.string());
}

std::vector<int32_t> tokens_of(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

MemoryConfig memory(const std::string& policy, TensorType kv = TensorType::F32) {
  MemoryConfig m;
  m.policy = policy;
  m.n_sink = 3;
  m.window = 40;
  m.max_batch = 23;
  m.kv_type = kv;
  m.block_size = 8;
  m.block_reps = 3;
  m.top_k = 3;
  m.sir_keep = 10;
  return m;
}

// Logits of every token, fed in max_batch chunks with NLL feedback (as a stream is evaluated).
std::vector<float> run(Engine& engine, const MemoryConfig& m, std::span<const int32_t> tokens) {
  auto seq = engine.new_sequence(m);
  FeedbackEval feed;
  std::vector<float> out;
  for (size_t i = 0; i < tokens.size(); i += m.max_batch) {
    const auto l = feed.eval(engine, *seq, tokens.subspan(i, std::min<size_t>(m.max_batch, tokens.size() - i)), true);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

TEST(MemoryPolicies, KeepingNothingExtraIsSink) {
  TinyModelSpec spec;
  Engine engine(tiny_model(spec, "policies-sink"), 2);
  const auto tokens = tokens_of(200, spec.vocab, 3);
  const std::vector<float> sink = run(engine, memory("sink"), tokens);
  MemoryConfig sir = memory("sirllm");
  sir.sir_keep = 0;
  EXPECT_EQ(run(engine, sir, tokens), sink);
  MemoryConfig inf = memory("infllm");
  inf.top_k = 0;
  EXPECT_EQ(run(engine, inf, tokens), sink);
  // With memory, the same stream gives other logits once blocks exist (and the same before).
  const std::vector<float> with = run(engine, memory("infllm"), tokens);
  const size_t V = spec.vocab;
  // Blocks form once a token has left the window: from about window + block on.
  EXPECT_TRUE(std::equal(sink.begin(), sink.begin() + 40 * V, with.begin()));
  EXPECT_NE(with, sink);
}

// sirllm's noise ceiling is the self-information of a uniform guess over the model's vocabulary
// unless set; 0 keeps SirLLM's published behaviour (no ceiling).
TEST(MemoryPolicies, SirllmNoiseCeilingDefaultsToTheLogOfTheVocabulary) {
  TinyModelSpec spec;
  Engine engine(tiny_model(spec, "policies-sir-ceiling"), 1);
  auto seq = engine.new_sequence(memory("sirllm"));
  EXPECT_DOUBLE_EQ(seq->config.sir_max_nll, std::log(static_cast<double>(spec.vocab)));
  EXPECT_NE(seq->policy->describe().find("max nll"), std::string::npos) << seq->policy->describe();
  MemoryConfig none = memory("sirllm");
  none.sir_max_nll = 0;
  seq = engine.new_sequence(none);
  EXPECT_EQ(seq->config.sir_max_nll, 0);
  EXPECT_EQ(seq->policy->describe().find("max nll"), std::string::npos) << seq->policy->describe();
}

TEST(MemoryPolicies, FastAttentionEqualsReference) {
  for (const char* arch : {"llama", "qwen2"}) {
    TinyModelSpec spec;
    spec.arch = arch;
    auto model = tiny_model(spec, std::string("policies-fast-") + arch);
    Engine fast(model, 2), ref(model, 2);
    fast.set_reference(false);
    ref.set_reference(true);
    const auto tokens = tokens_of(260, spec.vocab, 11);
    for (const char* policy : {"sirllm", "infllm"})
      for (TensorType kv : {TensorType::F32, TensorType::F16})
        for (bool compact : {false, true}) {
          MemoryConfig m = memory(policy, kv);
          m.mem_compact = compact;
          EXPECT_EQ(run(fast, m, tokens), run(ref, m, tokens)) << arch << " " << policy << " " << type_name(kv);
        }
  }
}

TEST(MemoryPolicies, SnapshotsContinueExactly) {
  TinyModelSpec spec;
  Engine engine(tiny_model(spec, "policies-snap"), 2);
  const auto dir = endless::testing::scratch_dir("policies-snap-files");
  const auto tokens = tokens_of(300, spec.vocab, 5);
  for (const char* policy : {"sirllm", "infllm", "infllm-disk"}) {
    MemoryConfig m = memory(std::string(policy).substr(0, 6));
    if (std::string(policy) == "infllm-disk") {
      m.mem_ram_mib = 0;
      m.memory_dir = (dir / "mem").string();
    }
    auto a = engine.new_sequence(m);
    FeedbackEval fa;
    for (size_t i = 0; i < 220; i += 20) fa.eval(engine, *a, std::span(tokens).subspan(i, 20));
    const auto path = (dir / (std::string(policy) + ".snap")).string();
    save_sequence(*a, engine.config(), path);
    auto b = load_sequence(engine, path);
    EXPECT_EQ(b->policy->n_seen(), 220);
    EXPECT_EQ(b->policy->describe(), a->policy->describe());
    FeedbackEval fb = fa;  // the logits that predict token 220, for its NLL
    for (size_t i = 220; i < 300; i += 10) {
      const auto la = fa.eval(engine, *a, std::span(tokens).subspan(i, 10), true);
      const std::vector<float> va(la.begin(), la.end());
      const auto lb = fb.eval(engine, *b, std::span(tokens).subspan(i, 10), true);
      const std::vector<float> vb(lb.begin(), lb.end());
      EXPECT_EQ(va, vb) << policy << " at " << i;
    }
  }
}

TEST(MemoryPolicies, StreamEvaluationFeedsSirLLMItsScores) {
  TinyModelSpec spec;
  Engine engine(tiny_model(spec, "policies-stream"), 2);
  const auto tokens = tokens_of(400, spec.vocab, 9);
  StreamEvalOptions o;
  o.memory = memory("sirllm");
  o.segment = 100;
  const StreamEvalResult r = stream_perplexity(engine, tokens, o);
  EXPECT_EQ(r.scored, 399);
  EXPECT_GT(r.ppl(), 1.0);
  // Fed by hand the same way, the kept set is not just the most recent tokens: scores decide.
  auto seq = engine.new_sequence(o.memory);
  FeedbackEval feed;
  for (size_t i = 0; i < tokens.size(); i += 23) feed.eval(engine, *seq, std::span(tokens).subspan(i, std::min<size_t>(23, tokens.size() - i)));
  const auto* sir = dynamic_cast<const SirLLMPolicy*>(seq->policy.get());
  ASSERT_NE(sir, nullptr);
  const std::vector<int64_t> kept = sir->kept();
  ASSERT_EQ(kept.size(), 10u);
  EXPECT_LT(kept.front(), kept.back() - 9);  // not one recent run
  for (int64_t p : kept) EXPECT_GT(sir->score(p), 0.0f);
}

TEST(MemoryPolicies, InfLLMBlocksStayInTheirRamBudget) {
  TinyModelSpec spec;
  Engine engine(tiny_model(spec, "policies-ram"), 2);
  const auto dir = endless::testing::scratch_dir("policies-ram-files");
  MemoryConfig m = memory("infllm", TensorType::F16);
  m.mem_ram_mib = 0;  // every block to the file
  m.memory_dir = dir.string();
  auto seq = engine.new_sequence(m);
  const auto tokens = tokens_of(2000, spec.vocab, 4);
  engine.eval(*seq, tokens, false);
  const auto* inf = dynamic_cast<const InfLLMPolicy*>(seq->policy.get());
  ASSERT_NE(inf, nullptr);
  const BlockStore* bs = inf->block_store();
  EXPECT_GT(bs->size(), 200);
  EXPECT_EQ(bs->in_ram(), 0);
  EXPECT_EQ(bs->on_disk(), bs->size());
  EXPECT_LE(bs->ram_bytes(), static_cast<size_t>(m.mem_hot_blocks) * (bs->geometry().layer_bytes() + 8));
  EXPECT_GT(bs->disk_reads(), 0);
  const std::string path = bs->path();
  EXPECT_TRUE(std::filesystem::exists(path));
  seq.reset();
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace endless
