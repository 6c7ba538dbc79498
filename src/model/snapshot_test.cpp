#include "model/snapshot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "test_support.h"
#include "tiny_model.h"
#include "util/error.h"

namespace endless {
namespace {

TEST(Snapshot, RestoredSequenceContinuesExactly) {
  const auto dir = endless::testing::scratch_dir("snapshot");
  endless::testing::TinyModelSpec spec;
  endless::testing::write_tiny_model(spec, (dir / "m.gguf").string());
  Engine engine(Model::load((dir / "m.gguf").string()), 1);
  for (const char* policy : {"full", "sink", "shift", "window"}) {
    MemoryConfig mem;
    mem.policy = policy;
    mem.n_ctx = 64;
    mem.window = 24;
    mem.n_keep = 2;
    mem.max_batch = 8;
    std::mt19937 rng(3);
    std::vector<int32_t> tokens(60);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % spec.vocab);
    auto a = engine.new_sequence(mem);
    engine.eval(*a, std::span(tokens).first(50), false);
    const auto path = (dir / (std::string(policy) + ".snap")).string();
    save_sequence(*a, engine.config(), path);
    auto b = load_sequence(engine, path);
    EXPECT_EQ(b->policy->n_seen(), 50);
    const std::vector<float> la = engine.eval(*a, std::span(tokens).subspan(50), false);
    const std::vector<float> lb = engine.eval(*b, std::span(tokens).subspan(50), false);
    EXPECT_EQ(la, lb) << policy;
  }
}

TEST(Snapshot, CorruptOrTruncatedIsAClearError) {
  const auto dir = endless::testing::scratch_dir("snapshot-bad");
  endless::testing::TinyModelSpec spec;
  endless::testing::write_tiny_model(spec, (dir / "m.gguf").string());
  Engine engine(Model::load((dir / "m.gguf").string()), 1);
  MemoryConfig mem;
  mem.n_ctx = 32;
  auto a = engine.new_sequence(mem);
  const int32_t t[3] = {5, 6, 7};
  engine.eval(*a, t, false);
  const auto path = (dir / "s.snap").string();
  save_sequence(*a, engine.config(), path);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  auto write = [&](const std::vector<char>& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  auto flipped = bytes;
  flipped[bytes.size() / 2] ^= 1;
  write(flipped);
  EXPECT_THROW(load_sequence(engine, path), Error);
  write(std::vector<char>(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size()) - 100));
  EXPECT_THROW(load_sequence(engine, path), Error);
  write({'n', 'o', 'p', 'e'});
  EXPECT_THROW(load_sequence(engine, path), Error);
  // A snapshot from another model shape is refused.
  write(bytes);
  spec.layers = 3;
  endless::testing::write_tiny_model(spec, (dir / "other.gguf").string());
  Engine other(Model::load((dir / "other.gguf").string()), 1);
  EXPECT_THROW(load_sequence(other, path), Error);
}

// A version-4 snapshot (written before infllm's half-life, whitening and consensus layers were
// stored) restores the settings infllm had then, not today's defaults: made here by writing a
// version-5 snapshot of a sequence with those settings and taking the version-5 fields out.
TEST(Snapshot, Version4InfLLMKeepsTheSettingsOfItsTime) {
  const auto dir = endless::testing::scratch_dir("snapshot-v4");
  endless::testing::TinyModelSpec spec;
  endless::testing::write_tiny_model(spec, (dir / "m.gguf").string());
  Engine engine(Model::load((dir / "m.gguf").string()), 1);
  MemoryConfig mem;
  mem.policy = "infllm";
  mem.n_sink = 2;
  mem.window = 24;
  mem.max_batch = 8;
  mem.block_size = 8;
  mem.top_k = 2;
  mem.mem_key_halflife = 0;  // what version 4 could not store: off then
  mem.mem_key_whiten = false;
  mem.mem_consensus_from = -1;
  mem.mem_key_parts = 1;
  mem.mem_consensus = false;
  ASSERT_NE(MemoryConfig().mem_key_halflife, 0);  // today's defaults differ
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(80);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % spec.vocab);
  auto a = engine.new_sequence(mem);
  engine.eval(*a, std::span(tokens).first(64), false);
  const auto path = (dir / "v4.snap").string();
  save_sequence(*a, engine.config(), path);
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), {});
  in.close();
  // The version-5 fields (half-life 0.0, whiten 0, consensus-from -1) sit just before the
  // policy state's length.
  std::vector<uint8_t> v5(9, 0);
  v5.insert(v5.end(), 4, 0xff);
  const auto n_state = static_cast<uint32_t>(a->policy->save_state().size());
  for (int i = 0; i < 4; ++i) v5.push_back(static_cast<uint8_t>(n_state >> (8 * i)));
  const auto at = std::search(b.begin(), b.end(), v5.begin(), v5.end());
  ASSERT_NE(at, b.end());
  ASSERT_EQ(std::search(at + 1, b.end(), v5.begin(), v5.end()), b.end());
  b.erase(at, at + 13);
  b[8] = 4;  // the version, after the 8-byte magic
  b.resize(b.size() - 8);
  uint64_t h = 1469598103934665603ull;  // FNV-1a, as the snapshot's checksum
  for (uint8_t x : b) h = (h ^ x) * 1099511628211ull;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(h >> (8 * i)));
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(b.data()),
                                                                static_cast<std::streamsize>(b.size()));
  auto r = load_sequence(engine, path);
  EXPECT_EQ(r->config.mem_key_halflife, 0);
  EXPECT_FALSE(r->config.mem_key_whiten);
  EXPECT_EQ(r->config.mem_consensus_from, -1);
  EXPECT_EQ(r->policy->describe(), a->policy->describe());
  const std::vector<float> la = engine.eval(*a, std::span(tokens).subspan(64), false);
  const std::vector<float> lb = engine.eval(*r, std::span(tokens).subspan(64), false);
  EXPECT_EQ(la, lb);
}

}  // namespace
}  // namespace endless
