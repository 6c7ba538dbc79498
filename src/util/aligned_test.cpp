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

// Storage of 2 MiB or more starts on a 2 MiB boundary (where a huge page can back it), smaller
// storage on a cache line; growing and copying keep both, and the contents.
TEST(HugePageVector, LargeStorageStartsOnAHugePageBoundary) {
  constexpr size_t kHuge = size_t{2} << 20;
  for (size_t n : {size_t{1}, size_t{4097}, kHuge - 1, kHuge, 3 * kHuge + 5}) {
    HugePageVector<uint8_t> bytes(n, 7);
    const size_t align = n >= kHuge ? kHuge : 64;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(bytes.data()) % align, 0u) << n;
    bytes.resize(n + kHuge, 9);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(bytes.data()) % kHuge, 0u) << n;
    EXPECT_EQ(bytes[n - 1], 7);
    EXPECT_EQ(bytes[n + kHuge - 1], 9);
    const HugePageVector<uint8_t> copy = bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % kHuge, 0u) << n;
    EXPECT_EQ(copy, bytes);
  }
}

}  // namespace
}  // namespace endless
