#include "util/mapped_file.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "test_support.h"
#include "util/error.h"

namespace endless {
namespace {

TEST(MappedFile, MapsTheBytesAndLocksThemInMemory) {
  const auto dir = testing::scratch_dir("mapped-file");
  const std::string path = (dir / "data.bin").string();
  std::string bytes(10000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  std::ofstream(path, std::ios::binary) << bytes;

  const MappedFile f(path);
  ASSERT_EQ(f.size(), bytes.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), bytes);
  // 10 KB is far below any RLIMIT_MEMLOCK, so pinning must succeed, and leaves the bytes as they were.
  f.lock_in_memory();
  EXPECT_EQ(f.data()[9999], static_cast<uint8_t>(9999 * 7));
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
