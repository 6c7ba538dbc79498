// Helpers shared by the GoogleTest suites: where the shared data lives and how to skip without it.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace endless::testing {

// ../shared beside the repository (override with ENDLESS_SHARED).
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("ENDLESS_SHARED")) return env;
  return std::filesystem::path(ENDLESS_SOURCE_DIR) / ".." / "shared";
}

inline std::filesystem::path shared_file(const std::string& rel) { return shared_dir() / rel; }

// A scratch directory unique to the running test, removed and re-created on each call.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("endless-test-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace endless::testing

// Skips the current test, saying why, when a file from ../shared is absent.
#define ENDLESS_REQUIRE_SHARED(rel)                                                       \
  do {                                                                                    \
    if (!std::filesystem::exists(::endless::testing::shared_file(rel)))                   \
      GTEST_SKIP() << "../shared/" << (rel) << " is absent: skipping (data not available)"; \
  } while (0)
