// Hostile and damaged model files: at least 1,000 files derived from real ones by truncation and
// byte mutations. Each must either be rejected with an Error or load and run; never crash, hang
// or allocate without bound (CI runs this under AddressSanitizer and UBSan).
#include <gtest/gtest.h>

#include <fstream>
#include <cstring>
#include <random>

#include "model/forward.h"
#include "test_support.h"
#include "tiny_model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace endless {
namespace {

std::vector<uint8_t> read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Loads a model image the way the CLI does and runs a few tokens through it.
// Returns true if it ran, false if it was rejected with an Error.
bool load_and_run(const std::vector<uint8_t>& bytes, const std::filesystem::path& path) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  try {
    auto model = Model::load(path.string());
    Tokenizer tok = Tokenizer::from_gguf(model->file());
    std::vector<int32_t> ids = tok.encode("Once upon a time", true);
    for (auto& id : ids) id = std::clamp<int32_t>(id, 0, static_cast<int32_t>(model->config().n_vocab - 1));
    if (ids.empty()) ids.push_back(0);
    ids.resize(std::min<size_t>(ids.size(), 4));
    Engine engine(model, 1);
    MemoryConfig mem;
    mem.n_ctx = 16;
    auto seq = engine.new_sequence(mem);
    engine.eval(*seq, ids, false);
    (void)tok.decode(ids);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// The files mutated: stories260K (and its F16 copy) when ../shared has them, else a tiny model.
std::vector<std::vector<uint8_t>> seeds(const std::filesystem::path& dir) {
  std::vector<std::vector<uint8_t>> out;
  for (const char* rel : {"models/stories260K.gguf", "models/synth/synth-qwen2-256.q4_k.gguf"}) {
    const auto p = endless::testing::shared_file(rel);
    if (std::filesystem::exists(p)) out.push_back(read_all(p));
  }
  if (out.empty()) {
    endless::testing::TinyModelSpec spec;
    endless::testing::write_tiny_model(spec, (dir / "tiny.gguf").string());
    out.push_back(read_all(dir / "tiny.gguf"));
  }
  return out;
}

TEST(Robustness, MutatedAndTruncatedModelsNeverCrash) {
  const auto dir = endless::testing::scratch_dir("robustness");
  const auto originals = seeds(dir);
  ASSERT_FALSE(originals.empty());
  std::mt19937_64 rng(20261128);
  int rejected = 0, ran = 0;
  const int kFiles = 1200;
  for (int i = 0; i < kFiles; ++i) {
    std::vector<uint8_t> b = originals[i % originals.size()];
    // The metadata and tensor table, where parsing decisions are made, lie in the first bytes.
    const size_t meta_end = std::min<size_t>(b.size(), 64 * 1024);
    switch (i % 4) {
      case 0:  // truncation anywhere
        b.resize(rng() % b.size());
        break;
      case 1: {  // a few random bytes in the header region
        const int n = 1 + static_cast<int>(rng() % 8);
        for (int k = 0; k < n; ++k) b[rng() % meta_end] = static_cast<uint8_t>(rng());
        break;
      }
      case 2: {  // an 8-byte field set to an extreme value (counts, lengths, dims, offsets)
        const size_t at = rng() % (meta_end - 8);
        const uint64_t extremes[] = {0, 1, 0xFFFFFFFFull, 0x7FFFFFFFFFFFFFFFull, ~0ull, 1ull << 40};
        const uint64_t v = extremes[rng() % std::size(extremes)];
        std::memcpy(b.data() + at, &v, 8);
        break;
      }
      default: {  // bytes anywhere, tensor data included (weights become garbage, even NaN)
        const int n = 1 + static_cast<int>(rng() % 32);
        for (int k = 0; k < n; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
        break;
      }
    }
    if (load_and_run(b, dir / "mutant.gguf")) ++ran;
    else ++rejected;
  }
  EXPECT_EQ(ran + rejected, kFiles);
  // Both outcomes must occur, or the mutations are not reaching the checks.
  EXPECT_GT(rejected, kFiles / 10);
  EXPECT_GT(ran, 10);
  std::printf("%d files: %d rejected with an error, %d loaded and ran\n", kFiles, rejected, ran);
}

}  // namespace
}  // namespace endless
