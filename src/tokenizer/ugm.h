// Unigram ("t5" vocabularies): Viterbi search for the best-scoring segmentation, after
// SentencePiece's normalization (precompiled charsmap, whitespace handling). Internal.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace endless::detail {

struct Vocab;

class UgmModel {
 public:
  UgmModel(const Vocab& vocab, std::string precompiled_charsmap);
  ~UgmModel();
  void encode(std::string_view text, std::vector<int32_t>& out) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace endless::detail
