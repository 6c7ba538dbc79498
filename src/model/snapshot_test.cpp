#include "model/snapshot.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace endless
