// The InfLLM block index: entries read back as written (from RAM or the index file), group
// summaries and alive totals, forgetting, RAM that does not grow with the blocks when a file
// holds the pages, snapshots of its state, and a corrupt index file as a clear error.
#include "memory/block_index.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "util/error.h"

namespace endless {
namespace {

constexpr int kLayers = 3, kWidth = 5, kGroup = 4;

// Entry d of block b in layer l: distinct numbers.
float value(int64_t b, int l, int d) { return std::sin(0.7f * static_cast<float>(b) + 1.9f * d) + 10.0f * l; }

void append(BlockIndex& ix, int64_t b) {
  std::vector<float> e(kLayers * kWidth);
  for (int l = 0; l < kLayers; ++l)
    for (int d = 0; d < kWidth; ++d) e[l * kWidth + d] = value(b, l, d);
  ix.append(e.data());
}

// Every alive entry, summary and total against what was appended.
void check(BlockIndex& ix) {
  for (int l = 0; l < kLayers; ++l) {
    std::vector<double> total(kWidth, 0.0);
    for (int64_t b = ix.first_alive(); b < ix.size(); ++b) {
      const float* e = ix.entries(l, b / kGroup) + (b % kGroup) * kWidth;
      for (int d = 0; d < kWidth; ++d) {
        ASSERT_EQ(e[d], value(b, l, d)) << "block " << b << " layer " << l;
        total[d] += value(b, l, d);
      }
    }
    for (int d = 0; d < kWidth; ++d) EXPECT_NEAR(ix.total(l)[d], total[d], 1e-9 * (1 + std::abs(total[d])));
    for (int64_t g = ix.first_alive() / kGroup; g < ix.complete_groups(); ++g)
      for (int d = 0; d < kWidth; ++d) {
        double mean = 0;
        for (int j = 0; j < kGroup; ++j) mean += value(g * kGroup + j, l, d) / kGroup;
        EXPECT_NEAR(ix.summary(l, g)[d], mean, 1e-5) << "group " << g;
      }
  }
}

TEST(BlockIndex, EntriesSummariesAndTotalsInRam) {
  BlockIndex ix(kLayers, kWidth, kGroup, "", 2);
  for (int64_t b = 0; b < 23; ++b) {
    append(ix, b);
    check(ix);
  }
  EXPECT_EQ(ix.complete_groups(), 5);
  EXPECT_TRUE(ix.pages().path().empty());
  // Forgetting (the blocks' RAM budget dropped them): totals lose those entries; whole groups go.
  ix.forget_before(10);
  EXPECT_EQ(ix.first_alive(), 10);
  check(ix);
  EXPECT_EQ(ix.pages().first_alive(), 2);  // groups 0 and 1 (blocks 0-7) are gone
  ix.forget_before(21);
  check(ix);
  append(ix, 23);
  append(ix, 24);
  check(ix);
}

TEST(BlockIndex, PagesGoToTheFileAndRamStaysBounded) {
  const auto dir = endless::testing::scratch_dir("blockindex");
  BlockIndex ix(kLayers, kWidth, kGroup, dir.string(), 2);
  size_t ram_at_100 = 0;
  for (int64_t b = 0; b < 1000; ++b) {
    append(ix, b);
    if (b == 99) ram_at_100 = ix.ram_bytes();
  }
  check(ix);
  EXPECT_FALSE(ix.pages().path().empty());
  EXPECT_EQ(ix.pages().on_disk(), 250);
  EXPECT_EQ(ix.pages().in_ram(), 0);
  // RAM grows only by the summaries (one entry per group, not per block) and the page cache
  // (two page-layers, each checksummed).
  const size_t per_group = kLayers * kWidth * sizeof(float);
  const size_t cache = 2 * (kGroup * kWidth * sizeof(float) + 8);
  EXPECT_LE(ix.pages().ram_bytes(), cache);
  EXPECT_LE(ix.ram_bytes(), ram_at_100 + (250 - 25) * per_group + cache);
}

TEST(BlockIndex, StateRoundTripsWithAndWithoutAFile) {
  const auto dir = endless::testing::scratch_dir("blockindex-state");
  for (bool file : {false, true}) {
    BlockIndex a(kLayers, kWidth, kGroup, file ? dir.string() : "", 2);
    for (int64_t b = 0; b < 31; ++b) append(a, b);
    if (!file) a.forget_before(9);
    std::vector<int64_t> s;
    a.save(s);
    BlockIndex b(kLayers, kWidth, kGroup, file ? dir.string() : "", 2);
    size_t i = 0;
    b.load(s, i);
    EXPECT_EQ(i, s.size());
    EXPECT_EQ(b.size(), 31);
    EXPECT_EQ(b.first_alive(), file ? 0 : 9);
    check(b);
    for (int l = 0; l < kLayers; ++l) EXPECT_EQ(a.total(l), b.total(l));
    for (int64_t x = 31; x < 40; ++x) {  // both go on alike
      append(a, x);
      append(b, x);
    }
    check(b);
    // A state cut short, or with a count that does not fit, is an error.
    std::vector<int64_t> cut(s.begin(), s.end() - 1);
    BlockIndex c(kLayers, kWidth, kGroup, file ? dir.string() : "", 2);
    i = 0;
    EXPECT_THROW(c.load(cut, i), Error);
    std::vector<int64_t> wrong = s;
    wrong[1] = wrong[0] + 1;  // first alive past the end
    BlockIndex e(kLayers, kWidth, kGroup, file ? dir.string() : "", 2);
    i = 0;
    EXPECT_THROW(e.load(wrong, i), Error);
  }
}

TEST(BlockIndex, ACorruptIndexFileIsAClearError) {
  const auto dir = endless::testing::scratch_dir("blockindex-bad");
  std::vector<int64_t> s;
  std::string path;
  {
    BlockIndex a(kLayers, kWidth, kGroup, dir.string(), 2);
    for (int64_t b = 0; b < 12; ++b) append(a, b);
    a.save(s);  // keeps the file
    path = a.pages().path();
  }
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 3);  // inside group 0, layer 0
    f.put('\x7f');
  }
  BlockIndex b(kLayers, kWidth, kGroup, dir.string(), 2);
  size_t i = 0;
  b.load(s, i);
  try {
    b.entries(0, 0);
    ADD_FAILURE() << "no error for a corrupt index page";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fails its checksum"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::filesystem::resize_file(path, 64 + 10);
  BlockIndex c(kLayers, kWidth, kGroup, dir.string(), 2);
  i = 0;
  EXPECT_THROW(c.load(s, i), Error);  // truncated: fewer pages than the state says
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace endless
