// Choosing the next token from logits: greedy, or repetition penalty, top-k, top-p, min-p and
// temperature followed by a draw, in llama.cpp's default order. A seed makes a run reproducible.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

namespace endless {

struct SamplerConfig {
  float temperature = 0.8f;  // <= 0: greedy
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;    // tokens the penalty looks back over
  uint64_t seed = 0xFFFFFFFF;   // same seed, same logits -> same tokens

  // Throws Error naming the first invalid setting.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& config);
  // Picks a token from one row of logits (not modified).
  int32_t sample(std::span<const float> logits);
  // Tells the sampler a token was appended (prompt or generated), for the repetition penalty.
  void accept(int32_t token);
  void reset();

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  SamplerConfig cfg_;
  std::mt19937_64 rng_;
  std::deque<int32_t> recent_;
  std::vector<Candidate> cand_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace endless
