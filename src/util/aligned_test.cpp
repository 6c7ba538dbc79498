#include "util/aligned.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace endless {
namespace {

// Every size, and storage that grows and is copied, starts on a cache line.
TEST(AlignedVector, StorageStartsOnACacheLine) {
  for (size_t n : {1, 3, 17, 1000, 300000}) {
    AlignedVector<uint8_t> bytes(n, 7);
    AlignedVector<float> floats(n, 1.5f);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(bytes.data()) % 64, 0u) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(floats.data()) % 64, 0u) << n;
    floats.resize(3 * n + 1, 2.5f);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(floats.data()) % 64, 0u) << n;
    EXPECT_EQ(floats[n - 1], 1.5f);
    EXPECT_EQ(floats[3 * n], 2.5f);
    const AlignedVector<uint8_t> copy = bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % 64, 0u) << n;
    EXPECT_EQ(copy, bytes);
  }
}

}  // namespace
}  // namespace endless
