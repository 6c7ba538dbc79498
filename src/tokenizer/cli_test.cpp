// `endless tokenize` / `endless detokenize` end to end. The binary is found through ENDLESS_BIN
// (set by ctest) or next to this test executable; the tests skip when it has not been built.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "test_support.h"

namespace endless {
namespace {

std::filesystem::path endless_binary() {
  if (const char* env = std::getenv("ENDLESS_BIN")) return env;
  return std::filesystem::read_symlink("/proc/self/exe").parent_path() / "endless";
}

struct Result {
  int status;
  std::string out;
};

// Runs a shell command line, returning its exit status and standard output.
Result run(const std::string& command) {
  Result r{-1, {}};
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = endless_binary();
    if (!std::filesystem::exists(bin_)) GTEST_SKIP() << bin_ << " is not built";
    if (!std::filesystem::exists(testing::shared_file("models/stories260K.gguf")))
      GTEST_SKIP() << "../shared/models/stories260K.gguf is absent";
    model_ = testing::shared_file("models/stories260K.gguf").string();
  }
  // Appended piece by piece: GCC 12 warns falsely of an overlapping memcpy (-Wrestrict) where
  // "'" + std::string&& inserts at the front of a temporary.
  static std::string quoted(const std::string& s) {
    std::string q = "'";
    q += s;
    q += '\'';
    return q;
  }
  std::string cmd(const std::string& args) const {
    return quoted(bin_.string()) + " " + args + " -m " + quoted(model_) + " 2>/dev/null";
  }
  std::filesystem::path bin_;
  std::string model_;
};

TEST_F(Cli, TokenizePrintsIds) {
  EXPECT_EQ(run(cmd("tokenize -p 'Once upon a time'")).out, "1 403 407 261 378\n");
  EXPECT_EQ(run(cmd("tokenize --no-bos -p 'Once upon a time'")).out, "403 407 261 378\n");
  EXPECT_EQ(run("printf 'Once upon a time' | " + cmd("tokenize")).out, "1 403 407 261 378\n");
  EXPECT_EQ(run(cmd("tokenize --no-bos --special -p '<s>'")).out, "1\n");
}

TEST_F(Cli, DetokenizePrintsText) {
  EXPECT_EQ(run(cmd("detokenize 403 407 261 378")).out, "Once upon a time");
  EXPECT_EQ(run("echo '1 403 407 261 378' | " + cmd("detokenize")).out, " Once upon a time");
  EXPECT_EQ(run("echo '[1, 403, 407, 261, 378]' | " + cmd("detokenize --stream")).out,
            "Once upon a time");
  EXPECT_EQ(run(cmd("detokenize --special 1 403")).out, "<s> Once");
}

TEST_F(Cli, BadInputFailsCleanly) {
  EXPECT_EQ(run(cmd("detokenize 403 abc")).status, 1);
  EXPECT_EQ(run(cmd("detokenize 99999")).status, 1);
  const Result r = run(quoted(bin_.string()) + " tokenize -p x -m /dev/null 2>&1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("error"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace endless
