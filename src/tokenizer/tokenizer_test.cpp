// Tests of loading, encoding details, decoding and streaming, on real vocabularies from
// ../shared and on small vocabularies built here with gguf::Writer.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "gguf/gguf.h"
#include "test_support.h"
#include "util/error.h"

namespace endless {
namespace {

using Ids = std::vector<int32_t>;

Tokenizer load_shared(const std::string& rel) {
  return Tokenizer::from_gguf(gguf::File::open(testing::shared_file(rel).string()));
}

Tokenizer from_writer(const gguf::Writer& w) {
  return Tokenizer::from_gguf(gguf::File::parse(w.to_bytes()));
}

// A SentencePiece vocabulary the way llama.cpp's llama2.c converter writes one: <unk>, <s>,
// </s>, then pieces with spaces as U+2581; byte tokens only if the vocabulary has them.
gguf::Writer spm_writer(const std::vector<std::pair<std::string, float>>& pieces) {
  std::vector<std::string> tokens{"<unk>", "<s>", "</s>"};
  std::vector<float> scores{0, 0, 0};
  std::vector<int32_t> types{2, 3, 3};
  for (const auto& [text, score] : pieces) {
    tokens.push_back(text);
    scores.push_back(score);
    types.push_back(text.size() == 6 && text.rfind("<0x", 0) == 0 ? 6 : 1);
  }
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_f32s("tokenizer.ggml.scores", scores);
  w.set_i32s("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  return w;
}

// ---- SentencePiece: stories260K ----

TEST(SpmTokenizer, Stories260KPromptMatchesLlamaCpp) {
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  const Tokenizer tok = load_shared("models/stories260K.gguf");
  EXPECT_EQ(tok.model_name(), "llama");
  EXPECT_EQ(tok.n_vocab(), 512);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.sep_id(), -1);  // stored as 0xFFFFFFFF: none
  EXPECT_TRUE(tok.add_bos());
  EXPECT_FALSE(tok.add_eos());
  EXPECT_TRUE(tok.add_space_prefix());
  EXPECT_EQ(tok.encode("Once upon a time", true), (Ids{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok.encode("Once upon a time", false), (Ids{403, 407, 261, 378}));
  EXPECT_EQ(tok.encode("", true), (Ids{1}));
  EXPECT_EQ(tok.encode("", false), Ids{});
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_FALSE(tok.is_eog(1));
  EXPECT_FALSE(tok.is_eog(403));
}

TEST(SpmTokenizer, PiecesAndDecodeFollowLlamaCpp) {
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  const Tokenizer tok = load_shared("models/stories260K.gguf");
  EXPECT_EQ(tok.token_text(403), "\xE2\x96\x81Once");
  EXPECT_EQ(tok.token_to_piece(403), " Once");
  EXPECT_EQ(tok.token_to_piece(1), "");  // control
  EXPECT_EQ(tok.token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok.token_to_piece(3 + 0x0A), "\n");  // <0x0A>
  EXPECT_EQ(tok.token_to_piece(3 + 0xF0), "\xF0");
  EXPECT_THROW(tok.token_to_piece(512), Error);
  EXPECT_THROW(tok.token_to_piece(-1), Error);
  EXPECT_THROW(tok.decode(Ids{403, 9999}), Error);
  // Without BOS the first token loses the space the encoder added; after a BOS llama.cpp keeps
  // it (the BOS takes the strip), with or without remove_special.
  EXPECT_EQ(tok.decode(Ids{403, 407, 261, 378}), "Once upon a time");
  EXPECT_EQ(tok.decode(Ids{1, 403, 407, 261, 378}), " Once upon a time");
  EXPECT_EQ(tok.decode(Ids{1, 403, 407, 261, 378}, true), " Once upon a time");
  EXPECT_EQ(tok.decode(Ids{1, 403, 2}, false, true), "<s> Once</s>");
}

TEST(SpmTokenizer, ByteFallbackRoundTripsAnyBytes) {
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  const Tokenizer tok = load_shared("models/stories260K.gguf");
  // A llama is not in a 512-token vocabulary: four byte tokens.
  const Ids ids = tok.encode("\xF0\x9F\xA6\x99", false);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(Ids(ids.end() - 4, ids.end()), (Ids{3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99}));
  for (const std::string& s : std::vector<std::string>{"a\xFF\xFE" "b", "\xE2\x82", "  two  spaces ", "tab\there\n",
                              std::string("nul\0byte", 8), "\xC0\x80 overlong"}) {
    EXPECT_EQ(tok.decode(tok.encode(s, false)), s);
  }
}

// ---- SentencePiece without byte fallback (llama2.c's character-level vocabularies) ----

TEST(SpmTokenizer, WithoutByteFallbackUnknownCharactersBecomeUnk) {
  const std::string sp = "\xE2\x96\x81";
  const Tokenizer tok =
      from_writer(spm_writer({{sp, -1}, {"a", -2}, {"b", -3}, {sp + "a", -4}, {"ab", -5}}));
  EXPECT_EQ(tok.n_vocab(), 8);
  // "▁ab": ▁a (-4) and ab (-5) compete; the higher score merges first, "▁ab" is no token.
  EXPECT_EQ(tok.encode("ab", false), (Ids{6, 5}));
  // '\n' and 'z' have neither a token nor <0xNN>: unk, one per byte.
  EXPECT_EQ(tok.encode("a\nz", true), (Ids{1, 6, 0, 0}));
  EXPECT_EQ(tok.encode("\xC3\xA9", false), (Ids{3, 0, 0}));
  EXPECT_EQ(tok.decode(Ids{6, 0, 5}), "ab");  // <unk> renders as nothing
}

TEST(SpmTokenizer, Babyllama105VocabularyMapsNewlineToUnk) {
  ENDLESS_REQUIRE_SHARED("models/llama2c/tok105.bin");
  // Convert llama2.c's tokenizer.bin as llama.cpp's converter does.
  std::ifstream in(testing::shared_file("models/llama2c/tok105.bin"), std::ios::binary);
  int32_t max_len = 0;
  in.read(reinterpret_cast<char*>(&max_len), 4);
  std::vector<std::pair<std::string, float>> pieces;
  for (int i = 0; i < 105; ++i) {
    float score;
    int32_t len;
    in.read(reinterpret_cast<char*>(&score), 4);
    in.read(reinterpret_cast<char*>(&len), 4);
    std::string text(size_t(len), '\0');
    in.read(text.data(), len);
    ASSERT_TRUE(in) << "token " << i;
    if (i < 3) continue;  // <unk>, <s>, </s> are fixed
    std::string escaped;
    for (char c : text) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    pieces.emplace_back(escaped, score);
  }
  const Tokenizer tok = from_writer(spm_writer(pieces));
  ASSERT_EQ(tok.n_vocab(), 105);
  const Ids ids = tok.encode("Once upon a time\nThe end", true);
  ASSERT_EQ(ids.size(), 1u + 1 + 24);  // BOS, the prefix space, one token per character
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);   // ▁
  EXPECT_EQ(ids[18], 0);  // the newline
  EXPECT_EQ(tok.decode(ids, true), " Once upon a timeThe end");
}

// ---- special tokens ----

TEST(SpecialTokens, ParsedOnlyWhenAsked) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  const Tokenizer tok = load_shared("vocab/ggml-vocab-llama-spm.gguf");
  const Ids parsed = tok.encode("<s>Hi</s>", false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  const Ids plain = tok.encode("<s>Hi</s>", false, false);
  for (int32_t id : plain) {
    EXPECT_NE(id, 1);
    EXPECT_NE(id, 2);
  }
  EXPECT_EQ(tok.decode(plain), "<s>Hi</s>");
  // After a special token SentencePiece prefixes a space again, as at the start.
  Ids expected{1};
  for (int32_t id : tok.encode("Hi", false)) expected.push_back(id);
  EXPECT_EQ(tok.encode("<s>Hi", false, true), expected);
}

TEST(SpecialTokens, Gpt2EndOfTextNeverFromPlainText) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  const Tokenizer tok = load_shared("vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(tok.model_name(), "gpt2");
  EXPECT_EQ(tok.pre_name(), "gpt-2");
  EXPECT_EQ(tok.encode("a<|endoftext|>b", false, true), (Ids{64, 50256, 65}));
  const Ids plain = tok.encode("a<|endoftext|>b", false, false);
  EXPECT_GT(plain.size(), 3u);
  for (int32_t id : plain) EXPECT_NE(id, 50256);
  EXPECT_TRUE(tok.is_eog(50256));
  EXPECT_TRUE(tok.is_control(50256));
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.decode(plain), "a<|endoftext|>b");
  EXPECT_EQ(tok.decode(Ids{64, 50256, 65}), "ab");
  EXPECT_EQ(tok.decode(Ids{64, 50256, 65}, false, true), "a<|endoftext|>b");
}

TEST(SpecialTokens, UserDefinedTokensAlwaysSplitOut) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-mpt.gguf");
  const Tokenizer tok = load_shared("vocab/ggml-vocab-mpt.gguf");
  // mpt stores runs of spaces as user-defined tokens: matched even without parse_special.
  const int32_t four_spaces = 50274;
  ASSERT_EQ(tok.token_text(four_spaces), "    ");
  const Ids ids = tok.encode("a    b", false, false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), four_spaces), ids.end());
  EXPECT_EQ(tok.decode(ids), "a    b");
}

TEST(SpecialTokens, Phi3StripsSpacesAfterChatTokens) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-phi-3.gguf");
  const Tokenizer tok = load_shared("vocab/ggml-vocab-phi-3.gguf");
  // general.name "Phi3": special tokens swallow the whitespace after them (rstrip).
  EXPECT_EQ(tok.encode("<|user|>\nHi", false, true), tok.encode("<|user|>Hi", false, true));
  EXPECT_TRUE(tok.is_eog(32000));  // <|endoftext|> is the EOS
  EXPECT_TRUE(tok.is_eog(32007));  // <|end|>
  // "</s>" is user-defined in this vocabulary: split out even from plain text.
  const Ids ids = tok.encode("a</s>", false, false);
  EXPECT_EQ(ids.back(), 2);
}

// ---- decoding of other kinds ----

TEST(Decode, Gpt2CleansSpacesBeforePunctuation) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  const Tokenizer tok = load_shared("vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(tok.decode(tok.encode("Hello world", false)), "Hello world");
  EXPECT_EQ(tok.decode(tok.encode(" Hello, world!\n\tdone", false)), " Hello, world!\n\tdone");
  EXPECT_EQ(tok.decode(tok.encode("a , b . c ' d 's", false)), "a, b. c'd's");
  EXPECT_EQ(tok.token_to_piece(tok.encode(" the", false).at(0)), " the");
  // Invalid UTF-8 is read as U+FFFD, as llama.cpp reads it.
  EXPECT_EQ(tok.decode(tok.encode("x\xFFy", false)), "x\xEF\xBF\xBDy");
}

TEST(Decode, BertKeepsTheWordSpaces) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-bert-bge.gguf");
  const Tokenizer tok = load_shared("vocab/ggml-vocab-bert-bge.gguf");
  EXPECT_EQ(tok.model_name(), "bert");
  const Ids ids = tok.encode("Hello World!", true);
  EXPECT_EQ(ids.front(), 101);  // CLS
  EXPECT_EQ(ids.back(), 102);   // SEP
  EXPECT_EQ(tok.decode(ids), " hello world!");
  EXPECT_EQ(tok.encode("\xC3\x89t\xC3\xA9", false), tok.encode("ete", false));  // accents dropped
}

// ---- streaming ----

TEST(Streaming, HoldsSplitCharactersAndDropsTheFirstSpace) {
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  const Tokenizer tok = load_shared("models/stories260K.gguf");
  StreamingDetokenizer s(tok);
  // `run -p ""`: BOS, then the generated text starts without a space.
  EXPECT_EQ(s.push(1), "");
  EXPECT_EQ(s.push(403), "Once");
  EXPECT_EQ(s.push(407), " upon");
  // A llama spelled in four byte tokens comes out whole with the last one.
  EXPECT_EQ(s.push(3 + 0xF0), "");
  EXPECT_EQ(s.push(3 + 0x9F), "");
  EXPECT_EQ(s.push(3 + 0xA6), "");
  EXPECT_EQ(s.push(3 + 0x99), "\xF0\x9F\xA6\x99");
  // A byte that can never start a character is replaced at once.
  EXPECT_EQ(s.push(3 + 0xFF), "\xEF\xBF\xBD");
  // A character cut short by a new one: U+FFFD, then the new one.
  EXPECT_EQ(s.push(3 + 0xE2), "");
  EXPECT_EQ(s.push(3 + 'x'), "\xEF\xBF\xBDx");
  // An unfinished character at the end.
  EXPECT_EQ(s.push(3 + 0xC3), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");
  // After finish() a new stream starts.
  EXPECT_EQ(s.push(403), "Once");
  EXPECT_EQ(s.finish(), "");
}

TEST(Streaming, EqualsDecodeOverAWholeStory) {
  ENDLESS_REQUIRE_SHARED("models/stories260K.gguf");
  ENDLESS_REQUIRE_SHARED("text/tinystories-valid-prefix.txt");
  const Tokenizer tok = load_shared("models/stories260K.gguf");
  std::ifstream in(testing::shared_file("text/tinystories-valid-prefix.txt"), std::ios::binary);
  std::string text(20000, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(size_t(in.gcount()));
  text.resize(text.rfind('\n') + 1);  // whole lines: no character cut in two
  const Ids ids = tok.encode(text, true);
  StreamingDetokenizer s(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += s.push(id);
  streamed += s.finish();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(tok.decode(std::span(ids).subspan(1)), text);
}

// ---- t5 (Unigram) on a small vocabulary ----

gguf::Writer ugm_writer() {
  const std::string sp = "\xE2\x96\x81";
  const std::vector<std::string> tokens{"<pad>", "</s>", "<unk>", sp,         "a",
                                        "b",     sp + "a", "ab",  sp + "ab", "<x>"};
  const std::vector<float> scores{0, 0, 0, -2, -3, -3, -2, -2.5, -6, 0};
  const std::vector<int32_t> types{3, 3, 2, 1, 1, 1, 1, 1, 1, 4};
  gguf::Writer w;
  w.set_string("tokenizer.ggml.model", "t5");
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_f32s("tokenizer.ggml.scores", scores);
  w.set_i32s("tokenizer.ggml.token_type", types);
  w.set_bool("tokenizer.ggml.add_space_prefix", true);
  w.set_bool("tokenizer.ggml.remove_extra_whitespaces", true);
  return w;
}

TEST(UgmTokenizer, ViterbiPicksTheBestSegmentation) {
  const Tokenizer tok = from_writer(ugm_writer());
  EXPECT_EQ(tok.model_name(), "t5");
  EXPECT_FALSE(tok.add_bos());
  EXPECT_TRUE(tok.add_eos());
  // "▁ab": ▁a + b = -5, ▁ + ab = -4.5, ▁ab = -6: the middle one wins.
  EXPECT_EQ(tok.encode("ab", false), (Ids{3, 7}));
  EXPECT_EQ(tok.encode("ab", true), (Ids{3, 7, 1}));
  // Runs of unknown characters collapse into one <unk>; extra spaces are merged.
  EXPECT_EQ(tok.encode("a  zz", false), (Ids{6, 3, 2}));
  // User-defined tokens are kept whole and score 0.
  EXPECT_EQ(tok.encode("a<x>", false), (Ids{6, 9}));
  EXPECT_EQ(tok.decode(tok.encode("ab a", false)), "ab a");
}

// ---- malformed vocabularies are Errors, never crashes ----

TEST(Loading, RejectsMalformedVocabularies) {
  {
    gguf::Writer w;
    w.set_string("general.architecture", "llama");
    EXPECT_THROW(from_writer(w), Error);  // no tokenizer at all
  }
  {
    gguf::Writer w = spm_writer({{"a", 0}});
    w.set_string("tokenizer.ggml.model", "rwkv");
    EXPECT_THROW(from_writer(w), Error);
  }
  {
    gguf::Writer w = spm_writer({{"a", 0}, {"a", 0}});
    EXPECT_THROW(from_writer(w), Error);  // duplicate token
  }
  {
    gguf::Writer w = spm_writer({{"a", 0}});
    w.set_f32s("tokenizer.ggml.scores", {0.0f});  // fewer scores than tokens
    EXPECT_THROW(from_writer(w), Error);
  }
  {
    gguf::Writer w = spm_writer({{"a", 0}});
    w.set_i32s("tokenizer.ggml.tokens", {1, 2, 3});  // tokens that are not strings
    EXPECT_THROW(from_writer(w), Error);
  }
  {
    gguf::Writer w = spm_writer({{"a", 0}});
    w.set_string("tokenizer.ggml.model", "gpt2");  // no merges
    EXPECT_THROW(from_writer(w), Error);
  }
  {
    gguf::Writer w = spm_writer({{"a", 0}});
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_strings("tokenizer.ggml.merges", {"a b"});
    w.set_string("tokenizer.ggml.pre", "no-such-pre-tokenizer");
    EXPECT_THROW(from_writer(w), Error);
  }
  {
    gguf::Writer w = ugm_writer();
    w.set_raw("tokenizer.ggml.precompiled_charsmap", gguf::ValueType::ARRAY, [] {
      std::vector<uint8_t> enc;
      gguf::Writer::put<uint32_t>(enc, uint32_t(gguf::ValueType::UINT8));
      gguf::Writer::put<uint64_t>(enc, 6);
      for (uint8_t b : {0xFF, 0xFF, 0x00, 0x00, 0x01, 0x02}) enc.push_back(b);
      return enc;
    }());
    EXPECT_THROW(from_writer(w), Error);  // XCDA larger than the map
  }
  {
    gguf::Writer w = spm_writer({{"a", 0}});
    w.set_bool("tokenizer.ggml.add_eos_token", true);
    w.set_u32("tokenizer.ggml.eos_token_id", 99);  // out of range: no EOS...
    EXPECT_NO_THROW(from_writer(w));               // ...so the default </s> stays
  }
}

}  // namespace
}  // namespace endless
