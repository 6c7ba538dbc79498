#include "util/mapped_file.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "test_support.h"
#include "util/error.h"

namespace endless {
namespace {

// Writes n bytes, byte i being byte(i), to path; returns them.
template <typename F>
std::string write_bytes(const std::string& path, size_t n, F byte) {
  std::string bytes(n, '\0');
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>(byte(i));
  std::ofstream(path, std::ios::binary) << bytes;
  return bytes;
}

TEST(MappedFile, MapsTheBytesAndLocksThemInMemory) {
  const auto dir = testing::scratch_dir("mapped-file");
  const std::string path = (dir / "data.bin").string();
  const std::string bytes = write_bytes(path, 10000, [](size_t i) { return i * 7; });

  const MappedFile f(path);
  ASSERT_EQ(f.size(), bytes.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), bytes);
  // 10 KB is far below any RLIMIT_MEMLOCK, so pinning must succeed, and leaves the bytes as they were.
  f.lock_in_memory();
  EXPECT_EQ(f.data()[9999], static_cast<uint8_t>(9999 * 7));
}

TEST(MappedFile, ReadsTheBytesIntoHugePageAlignedMemory) {
  const auto dir = testing::scratch_dir("mapped-file-read");
  const std::string path = (dir / "data.bin").string();
  // Larger than one 2 MiB page and not a multiple of it, so the rounding and the tail are used.
  const std::string bytes = write_bytes(path, (size_t{5} << 20) + 12345, [](size_t i) { return i * 13 + (i >> 16); });

  MappedFile f(path, Residency::read);
  EXPECT_EQ(f.residency(), Residency::read);
  ASSERT_EQ(f.size(), bytes.size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data()) % (uintptr_t{2} << 20), 0u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), bytes);
  f.lock_in_memory();
  // A move hands the block over; the moved-from object owns nothing.
  MappedFile g(std::move(f));
  EXPECT_EQ(f.data(), nullptr);
  EXPECT_EQ(g.data()[bytes.size() - 1], static_cast<uint8_t>(bytes.back()));

  // An empty file reads as empty.
  const std::string empty = (dir / "empty.bin").string();
  std::ofstream(empty, std::ios::binary).flush();
  EXPECT_EQ(MappedFile(empty, Residency::read).size(), 0u);
}

// Dropped bytes are read again from the file, mapped or read into memory; bytes outside the
// range, and ranges outside the file or smaller than a page, are left alone.
TEST(MappedFile, DroppedBytesComeBackFromTheFile) {
  const auto dir = testing::scratch_dir("mapped-file-drop");
  const std::string path = (dir / "data.bin").string();
  const std::string bytes = write_bytes(path, (size_t{5} << 20) + 777, [](size_t i) { return i * 29 + (i >> 12); });
  for (Residency residency : {Residency::mapped, Residency::read}) {
    MappedFile f(path, residency);
    f.drop(f.data() + (size_t{3} << 20) + 7, 100000);
    f.drop(f.data() + (size_t{1} << 20) + 123, (size_t{1} << 20) + 5000);
    f.drop(f.data() + 10, 100);
    f.drop(f.data() + f.size() - 5000, 10000);  // past the end: refused
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), bytes);
    f.lock_in_memory();  // the pages around the dropped ones
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), bytes);
  }
}

TEST(MappedFile, NamesThePathWhenItCannotOpen) {
  try {
    MappedFile f("/nonexistent/endless/model.gguf");
    FAIL() << "opened a file that does not exist";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/endless/model.gguf"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace endless
