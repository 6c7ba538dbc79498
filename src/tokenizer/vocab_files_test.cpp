// llama.cpp's tokenizer test vectors (../shared/vocab/ggml-vocab-NAME.gguf{,.inp,.out}): every
// string must give exactly the ids llama.cpp gives (add_special=false, parse_special=false).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "gguf/gguf.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace endless {
namespace {

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The .inp file: strings separated (and ended) by "\n__ggml_vocab_test__\n".
std::vector<std::string> read_inputs(const std::filesystem::path& path) {
  const std::string text = read_all(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find(sep, pos);
    if (end == std::string::npos) {
      out.push_back(text.substr(pos));
      break;
    }
    out.push_back(text.substr(pos, end - pos));
    pos = end + sep.size();
  }
  return out;
}

// The .out file: one line of space-separated ids per string.
std::vector<std::vector<int32_t>> read_outputs(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::vector<int32_t>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ids(line);
    out.emplace_back();
    int32_t id;
    while (ids >> id) out.back().push_back(id);
  }
  return out;
}

class VocabFile : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabFile, MatchesLlamaCpp) {
  const std::string base = std::string("vocab/ggml-vocab-") + GetParam() + ".gguf";
  ENDLESS_REQUIRE_SHARED(base);
  ENDLESS_REQUIRE_SHARED(base + ".inp");
  const auto dir = testing::shared_file(base);
  const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(dir.string()));
  const auto inputs = read_inputs(dir.string() + ".inp");
  const auto expected = read_outputs(dir.string() + ".out");
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GT(inputs.size(), 40u);
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_EQ(tok.encode(inputs[i], false, false), expected[i]) << "input " << i << ": '"
                                                                 << inputs[i] << "'";
}

// decode(encode(x)) == x wherever llama.cpp's detokenizer gives x back: always for
// SentencePiece and for byte-level BPE without space cleaning; with cleaning, for strings it
// leaves alone. (WordPiece lowercases and drops accents: no round trip to check.)
class RoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(RoundTrip, LikeLlamaCpp) {
  const std::string base = std::string("vocab/ggml-vocab-") + GetParam() + ".gguf";
  ENDLESS_REQUIRE_SHARED(base);
  ENDLESS_REQUIRE_SHARED(base + ".inp");
  const auto path = testing::shared_file(base);
  const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(path.string()));
  const bool cleans = tok.model_name() == "gpt2" && tok.pre_name() != "deepseek-llm";
  size_t checked = 0;
  for (const std::string& text : read_inputs(path.string() + ".inp")) {
    if (cleans && (text.find(" ,") != std::string::npos || text.find(" .") != std::string::npos ||
                   text.find(" ?") != std::string::npos || text.find(" !") != std::string::npos ||
                   text.find(" '") != std::string::npos))
      continue;
    EXPECT_EQ(tok.decode(tok.encode(text, false)), text);
    ++checked;
  }
  EXPECT_GT(checked, 40u);
}

std::string param_name(const ::testing::TestParamInfo<const char*>& info) {
  std::string name = info.param;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Shared, VocabFile,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "mpt", "refact",
                                           "falcon", "deepseek-llm", "bert-bge"),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Shared, RoundTrip,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "mpt", "refact",
                                           "falcon", "deepseek-llm"),
                         param_name);

}  // namespace
}  // namespace endless
