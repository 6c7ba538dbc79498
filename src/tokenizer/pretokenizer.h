// The regex pre-tokenizers of byte-level BPE vocabularies (tokenizer.ggml.pre), run with PCRE2
// in UTF + UCP mode. Internal to the tokenizer module.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace endless::detail {

enum class PreTokenizerKind {
  Default, Llama3, DeepseekLlm, DeepseekCoder, Deepseek3Llm, Falcon, Mpt, Starcoder, Gpt2,
  Refact, CommandR, Stablelm2, Qwen2, Olmo, Dbrx, Smaug, Poro, Chatglm4, Viking, Jais, Tekken,
  Smollm, Codeshell, Bloom, Gpt3Finnish, Exaone, Chameleon, Minerva, Gpt4o, SuperBpe, Trillion,
  BailingMoe, SeedCoder,
};

// llama.cpp's regex list for a pre-tokenizer, in its syntax (applied one after another, each
// splitting the pieces the previous ones left).
std::vector<std::string> pretokenizer_patterns(PreTokenizerKind kind);

class PreTokenizer {
 public:
  explicit PreTokenizer(const std::vector<std::string>& patterns);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Splits text into words. Like llama.cpp, the text is first decoded leniently (an invalid byte
  // becomes U+FFFD) and re-encoded, so `normalized` receives the text the words index into.
  struct Word {
    size_t offset;
    size_t length;
  };
  void split(std::string_view text, std::string& normalized, std::vector<Word>& words) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace endless::detail
