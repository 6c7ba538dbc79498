// Random and mutated byte strings, including invalid UTF-8, through every tokenizer kind:
// nothing may crash (run it under -DENDLESS_SANITIZE=ON too), ids stay in range, streaming
// output is valid UTF-8, and the round trips that hold for llama.cpp hold here.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "gguf/gguf.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace endless {
namespace {

class Inputs {
 public:
  explicit Inputs(uint32_t seed) : rng_(seed) {
    const auto path = testing::shared_file("vocab/ggml-vocab-llama-spm.gguf.inp");
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    const std::string all = s.str();
    for (size_t pos = 0; pos < all.size();) {
      const size_t end = all.find("\n__ggml_vocab_test__\n", pos);
      seeds_.push_back(all.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
      if (end == std::string::npos) break;
      pos = end + 21;
    }
    seeds_.push_back("<s>Hello</s> <|endoftext|> [CLS] <unk> 'll've 123456 \t\n");
  }

  std::string next() {
    switch (pick(4)) {
      case 0: return random_bytes();
      case 1: return random_text();
      default: return mutate(seeds_[pick(seeds_.size())]);
    }
  }

 private:
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  std::string random_bytes() {
    std::string s(pick(48), '\0');
    for (char& c : s) c = char(pick(256));
    return s;
  }
  // Characters of every UTF-8 length, whitespace, digits, punctuation and stray bytes.
  std::string random_text() {
    static constexpr std::string_view kPieces[] = {
        " ", "  ", "\n", "\t", "\r\n", "a", "Z", "q", "'s", "'LL", "0", "7", "1234", ".", ",",
        "!", "~", "$", "<", ">", "\xC3\xA9", "\xC2\x85", "\xC2\xA0", "\xE2\x96\x81", "\xE3\x80\x80",
        "\xE6\x88\x91", "\xF0\x9F\xA6\x99", "\xEF\xBF\xBD", "\x80", "\xFF", "\xC3", "\xE2\x82",
        "\xF0\x9F", "\xED\xA0\x80", "\xC0\x80", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80",
        "<s>", "</s>", "<|endoftext|>", "[SEP]", std::string_view("\0", 1)};
    std::string s;
    for (size_t n = pick(24); n > 0; --n) s += kPieces[pick(std::size(kPieces))];
    return s;
  }
  std::string mutate(std::string s) {
    for (size_t n = 1 + pick(4); n > 0; --n) {
      const size_t at = s.empty() ? 0 : pick(s.size() + 1);
      switch (pick(3)) {
        case 0: s = s.substr(0, at) + char(pick(256)) + s.substr(at); break;
        case 1: if (at < s.size()) s.erase(at, 1 + pick(3)); break;
        default: if (at < s.size()) s[at] = char(s[at] ^ (1 << pick(8))); break;
      }
    }
    return s;
  }

  std::mt19937 rng_;
  std::vector<std::string> seeds_;
};

bool valid_utf8(const std::string& s) {
  for (size_t pos = 0; pos < s.size();) {
    const auto c = unicode::check_utf8(s, pos);
    if (c.kind != unicode::Utf8Check::Valid) return false;
    pos += c.length;
  }
  return true;
}

// decode() cleans " ," etc. for gpt2-style vocabularies; strings without those round-trip.
bool cleanable(const std::string& s) {
  for (const char* p : {" ?", " !", " .", " ,", " '"})
    if (s.find(p) != std::string::npos) return true;
  return false;
}

void fuzz(const std::string& rel, size_t runs, uint32_t seed) {
  const Tokenizer tok =
      Tokenizer::from_gguf(gguf::File::open(testing::shared_file(rel).string()));
  Inputs inputs(seed);
  std::mt19937 rng(seed);
  const bool spm = tok.model_name() == "llama";
  const bool bpe = tok.model_name() == "gpt2";
  size_t round_trips = 0;
  for (size_t i = 0; i < runs; ++i) {
    const std::string text = inputs.next();
    const bool add_special = rng() & 1, parse_special = rng() & 1;
    const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
    for (int32_t id : ids) {
      ASSERT_TRUE(id >= 0 && id < tok.n_vocab()) << rel << " id " << id;
    }
    const std::string decoded = tok.decode(ids, rng() & 1, rng() & 1);
    StreamingDetokenizer stream(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    ASSERT_TRUE(valid_utf8(streamed)) << rel << " input " << i;
    if (!add_special && !parse_special) {
      const bool spaces_intact = valid_utf8(text) || text.find(' ') == std::string::npos;
      if (spm && spaces_intact && text.find("\xE2\x96\x81") == std::string::npos) {
        // Byte fallback spells out anything, so SentencePiece round-trips byte strings, as in
        // llama.cpp, except where it cannot either: its visible space U+2581 decodes as a space,
        // and a broken lead byte right before a space swallows part of that space's U+2581.
        ASSERT_EQ(tok.decode(ids), text) << rel << " input " << i;
        ++round_trips;
      } else if (bpe && valid_utf8(text) && !cleanable(text)) {
        ASSERT_EQ(tok.decode(ids), text) << rel << " input " << i;
        ++round_trips;
      }
    }
  }
  if (spm || bpe) {
    EXPECT_GT(round_trips, runs / 20) << rel;
  }
}

TEST(Fuzz, SentencePiece) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  fuzz("vocab/ggml-vocab-llama-spm.gguf", 5000, 1);
}

TEST(Fuzz, ByteLevelBpe) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  fuzz("vocab/ggml-vocab-gpt-2.gguf", 5000, 2);
}

TEST(Fuzz, ByteLevelBpeWithManyPatterns) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-deepseek-llm.gguf");
  fuzz("vocab/ggml-vocab-deepseek-llm.gguf", 4000, 3);
}

TEST(Fuzz, WordPiece) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-bert-bge.gguf");
  fuzz("vocab/ggml-vocab-bert-bge.gguf", 4000, 4);
}

// A t5 vocabulary with a garbage charsmap: encoding either works or reports an Error.
TEST(Fuzz, UnigramWithHostileCharsmap) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf.inp");
  std::mt19937 rng(5);
  Inputs inputs(5);
  for (int round = 0; round < 20; ++round) {
    gguf::Writer w;
    w.set_string("tokenizer.ggml.model", "t5");
    w.set_strings("tokenizer.ggml.tokens", {"<pad>", "</s>", "<unk>", "\xE2\x96\x81", "a", "b"});
    w.set_f32s("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3});
    w.set_i32s("tokenizer.ggml.token_type", {3, 3, 2, 1, 1, 1});
    std::vector<uint8_t> map(4 + 64 + 16);
    for (auto& b : map) b = uint8_t(rng());
    const uint32_t blob = 64;
    std::memcpy(map.data(), &blob, 4);
    std::vector<uint8_t> enc;
    gguf::Writer::put<uint32_t>(enc, uint32_t(gguf::ValueType::UINT8));
    gguf::Writer::put<uint64_t>(enc, map.size());
    enc.insert(enc.end(), map.begin(), map.end());
    w.set_raw("tokenizer.ggml.precompiled_charsmap", gguf::ValueType::ARRAY, enc);
    const Tokenizer tok = Tokenizer::from_gguf(gguf::File::parse(w.to_bytes()));
    for (int i = 0; i < 100; ++i) {
      try {
        for (int32_t id : tok.encode(inputs.next(), true)) {
          ASSERT_TRUE(id >= 0 && id < 6);
        }
      } catch (const Error&) {
        // a corrupt map is reported, not followed out of bounds
      }
    }
  }
}

TEST(Fuzz, ConcurrentEncodingGivesTheSameIds) {
  ENDLESS_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  const Tokenizer tok = Tokenizer::from_gguf(
      gguf::File::open(testing::shared_file("vocab/ggml-vocab-gpt-2.gguf").string()));
  Inputs inputs(6);
  std::vector<std::string> texts;
  for (int i = 0; i < 400; ++i) texts.push_back(inputs.next());
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(tok.encode(t, false));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < texts.size(); ++i)
        if (tok.encode(texts[i], false) != expected[i]) ++mismatches[size_t(t)];
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0, 0, 0}));
}

}  // namespace
}  // namespace endless
