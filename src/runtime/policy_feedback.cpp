#include "runtime/policy_feedback.h"

#include "runtime/perplexity.h"

namespace endless {

std::span<const float> FeedbackEval::eval(Engine& engine, Sequence& seq, std::span<const int32_t> tokens,
                                          bool all_logits) {
  const int64_t V = engine.config().n_vocab;
  if (tokens.empty()) return last_;
  MemoryPolicy& policy = *seq.policy;
  const bool feedback = policy.wants_nll();
  const int64_t first = policy.n_seen();
  // The first token was predicted by the previous call's last logits.
  if (feedback && static_cast<int64_t>(last_.size()) == V) {
    const float nll = static_cast<float>(token_nll(last_, tokens[0]));
    policy.observe_nll(first, &nll, 1);
  }
  const std::vector<float>& logits = engine.eval(seq, tokens, feedback || all_logits);
  if (feedback) {
    nll_.clear();
    for (size_t j = 0; j + 1 < tokens.size(); ++j)
      nll_.push_back(static_cast<float>(token_nll(std::span(logits.data() + j * V, V), tokens[j + 1])));
    if (!nll_.empty()) policy.observe_nll(first + 1, nll_.data(), static_cast<int>(nll_.size()));
  }
  last_.assign(logits.end() - V, logits.end());
  if (all_logits) return std::span<const float>(logits);
  return last_;
}

}  // namespace endless
