// Byte-level BPE ("gpt2" vocabularies): a regex pre-tokenizer splits text into words, each word's
// bytes are mapped to GPT-2's printable characters and merged by rank. Internal to the module.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenizer.h"

namespace endless::detail {

struct Vocab;

class BpeModel {
 public:
  BpeModel(const Vocab& vocab, const std::vector<std::string_view>& merges,
           PreTokenizerKind pre, bool ignore_merges);
  ~BpeModel();
  void encode(std::string_view text, std::vector<int32_t>& out) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace endless::detail
