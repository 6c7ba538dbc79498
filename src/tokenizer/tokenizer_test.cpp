// Tests of the SentencePiece ("llama") tokenizer, decoding and streaming.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include "gguf/gguf.h"
#include "test_support.h"
#include "util/error.h"

namespace endless {
namespace {

Tokenizer load_shared(const std::string& rel) {
  return Tokenizer::from_gguf(gguf::File::open(testing::shared_file(rel).string()));
}

TEST(SpmTokenizer, Stories260KPromptMatchesLlamaCpp) {
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  const Tokenizer tok = load_shared("models/stories260K.gguf");
  EXPECT_EQ(tok.model_name(), "llama");
  EXPECT_EQ(tok.n_vocab(), 512);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_FALSE(tok.add_eos());
  EXPECT_EQ(tok.encode("Once upon a time", true), (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok.decode(tok.encode("Once upon a time", false)), "Once upon a time");
}

}  // namespace
}  // namespace endless
