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

// The FNV-1a checksum a snapshot ends with, recomputed over b (without its old one).
void reseal(std::vector<uint8_t>& b) {
  b.erase(b.end() - 8, b.end());
  uint64_t h = 1469598103934665603ull;
  for (uint8_t x : b) h = (h ^ x) * 1099511628211ull;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(h >> (8 * i)));
}

// A current snapshot of `seq` rewritten in the cache layout of versions 1 to 5 (every slot of the
// cache, no count of slots written), still marked as the current version. The cache is the
// file's tail: capacity, slots written, then per layer the keys and the values of those slots.
void with_whole_cache(std::vector<uint8_t>& b, const Sequence& seq) {
  const KVStore& s = seq.store;
  const size_t row = static_cast<size_t>(s.kv_dim()) * s.elem_size();
  const size_t have = static_cast<size_t>(s.written()) * row, whole = static_cast<size_t>(s.capacity()) * row;
  const size_t kv_at = b.size() - 8 - 2 * have * s.n_layers();
  std::vector<uint8_t> out(b.begin(), b.begin() + static_cast<long>(kv_at) - 8);  // without "written"
  for (int l = 0; l < 2 * s.n_layers(); ++l) {  // keys, values, keys, ...: each padded with zeros
    const auto* part = b.data() + kv_at + l * have;
    out.insert(out.end(), part, part + have);
    out.insert(out.end(), whole - have, 0);
  }
  out.insert(out.end(), 8, 0);
  reseal(out);
  b = std::move(out);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

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
  std::vector<uint8_t> b = read_bytes(path);
  with_whole_cache(b, *a);
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
  reseal(b);
  write_bytes(path, b);
  auto r = load_sequence(engine, path);
  EXPECT_EQ(r->config.mem_key_halflife, 0);
  EXPECT_FALSE(r->config.mem_key_whiten);
  EXPECT_EQ(r->config.mem_consensus_from, -1);
  EXPECT_EQ(r->policy->describe(), a->policy->describe());
  const std::vector<float> la = engine.eval(*a, std::span(tokens).subspan(64), false);
  const std::vector<float> lb = engine.eval(*r, std::span(tokens).subspan(64), false);
  EXPECT_EQ(la, lb);
}

// A snapshot holds the slots written so far, not the whole cache: a young session's file grows
// with its tokens. A version-5 snapshot (the whole cache) of the same sequence still restores
// it exactly.
TEST(Snapshot, HoldsOnlyTheSlotsWrittenAndReadsTheWholeCacheOfVersion5) {
  const auto dir = endless::testing::scratch_dir("snapshot-written");
  endless::testing::TinyModelSpec spec;
  endless::testing::write_tiny_model(spec, (dir / "m.gguf").string());
  Engine engine(Model::load((dir / "m.gguf").string()), 1);
  MemoryConfig mem;
  mem.n_ctx = 64;
  mem.max_batch = 8;
  std::mt19937 rng(9);
  std::vector<int32_t> tokens(40);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % spec.vocab);
  auto a = engine.new_sequence(mem);
  const auto path = (dir / "s.snap").string();
  engine.eval(*a, std::span(tokens).first(10), false);
  EXPECT_EQ(a->store.written(), 10);
  save_sequence(*a, engine.config(), path);
  const size_t size10 = read_bytes(path).size();
  engine.eval(*a, std::span(tokens).subspan(10, 20), false);
  EXPECT_EQ(a->store.written(), 30);
  save_sequence(*a, engine.config(), path);
  std::vector<uint8_t> b = read_bytes(path);
  const size_t slot_bytes = 2 * static_cast<size_t>(engine.config().n_layers) * a->store.kv_dim() * a->store.elem_size();
  EXPECT_EQ(b.size() - size10, 20 * slot_bytes);

  auto r = load_sequence(engine, path);
  EXPECT_EQ(r->store.written(), 30);
  with_whole_cache(b, *a);
  b[8] = 5;  // the version, after the 8-byte magic
  reseal(b);
  EXPECT_EQ(b.size(), read_bytes(path).size() + (64 - 30) * slot_bytes - 8);
  const auto old_path = (dir / "v5.snap").string();
  write_bytes(old_path, b);
  auto r5 = load_sequence(engine, old_path);
  EXPECT_EQ(r5->policy->n_seen(), 30);
  const std::vector<float> la = engine.eval(*a, std::span(tokens).subspan(30), false);
  EXPECT_EQ(engine.eval(*r, std::span(tokens).subspan(30), false), la);
  EXPECT_EQ(engine.eval(*r5, std::span(tokens).subspan(30), false), la);
}

}  // namespace
}  // namespace endless
