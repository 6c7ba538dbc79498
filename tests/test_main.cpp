#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

// The scratch directories this process made (test_support.h: scratch_dir) are removed when every
// test passed; after a failure they stay for a look (their names carry the process id), as they
// do with ENDLESS_KEEP_TEST_FILES set.
static void remove_scratch_dirs() {
  namespace fs = std::filesystem;
  const std::string prefix = "endless-test-" + std::to_string(::getpid()) + "-";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) fs::remove_all(e.path(), ec);
  }
}

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  if (result == 0 && std::getenv("ENDLESS_KEEP_TEST_FILES") == nullptr) remove_scratch_dirs();
  return result;
}
