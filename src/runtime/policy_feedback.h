// Feeding a sequence token by token or in chunks while giving its cache policy the feedback it
// asks for: the NLL of every token (SirLLM's self-information), computed from the logits that
// predicted it. The logits of every token are computed only when the policy wants them or the
// caller asks.
#pragma once

#include <span>
#include <vector>

#include "model/forward.h"

namespace endless {

class FeedbackEval {
 public:
  // Appends tokens to seq. Returns the logits of the last token (n_vocab floats) or, with
  // all_logits, of every token (n_vocab each); valid until the next call on this object or the
  // engine.
  std::span<const float> eval(Engine& engine, Sequence& seq, std::span<const int32_t> tokens,
                              bool all_logits = false);

 private:
  std::vector<float> last_;  // logits of the last token fed: they predict the next one
  std::vector<float> nll_;
};

}  // namespace endless
