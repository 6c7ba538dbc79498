#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "util/error.h"

namespace endless {

void SamplerConfig::validate() const {
  if (!std::isfinite(temperature)) fail("temperature must be a finite number");
  if (!(top_p >= 0 && top_p <= 1)) fail("top-p must be in [0, 1], got ", top_p);
  if (!(min_p >= 0 && min_p <= 1)) fail("min-p must be in [0, 1], got ", min_p);
  if (!(repeat_penalty > 0) || !std::isfinite(repeat_penalty))
    fail("repeat penalty must be a positive number, got ", repeat_penalty);
  if (repeat_last_n < 0) fail("repeat-last-n must not be negative");
}

int32_t argmax(std::span<const float> logits) {
  // The largest value first, in sixteen running maxima (one chain of compare-and-move would wait
  // on itself at every element; these are vector max instructions), then its first index.
  constexpr int kLanes = 16;
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -INFINITY);
  const size_t n = logits.size();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lane[k] = logits[i + k] > lane[k] ? logits[i + k] : lane[k];
  for (; i < n; ++i) lane[0] = logits[i] > lane[0] ? logits[i] : lane[0];
  const float best = *std::max_element(lane, lane + kLanes);
  for (i = 0; i < n; ++i)
    if (logits[i] == best) return static_cast<int32_t>(i);
  return 0;  // every logit NaN
}

Sampler::Sampler(const SamplerConfig& config) : cfg_(config), rng_(config.seed) { cfg_.validate(); }

void Sampler::reset() {
  rng_.seed(cfg_.seed);
  recent_.clear();
}

void Sampler::accept(int32_t token) {
  if (cfg_.repeat_last_n == 0) return;
  recent_.push_back(token);
  while (static_cast<int>(recent_.size()) > cfg_.repeat_last_n) recent_.pop_front();
}

int32_t Sampler::sample(std::span<const float> logits) {
  // Greedy: the first largest logit, without building the candidate list. Sampling runs between
  // batched decode steps while the other threads wait, once per sequence.
  if (cfg_.temperature <= 0 && (cfg_.repeat_penalty == 1.0f || recent_.empty())) return argmax(logits);

  cand_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) cand_[i] = {static_cast<int32_t>(i), logits[i], 0};

  // Repetition penalty (CTRL-style, as llama.cpp): shrink positive logits, push negative ones down.
  if (cfg_.repeat_penalty != 1.0f && !recent_.empty()) {
    std::unordered_set<int32_t> seen(recent_.begin(), recent_.end());
    for (int32_t id : seen) {
      if (id < 0 || static_cast<size_t>(id) >= cand_.size()) continue;
      float& l = cand_[id].logit;
      l = l > 0 ? l / cfg_.repeat_penalty : l * cfg_.repeat_penalty;
    }
  }

  if (cfg_.temperature <= 0) {
    auto best = std::max_element(cand_.begin(), cand_.end(),
                                 [](const auto& a, const auto& b) { return a.logit < b.logit; });
    return best->id;
  }

  auto by_logit = [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; };
  size_t n = cand_.size();
  if (cfg_.top_k > 0 && static_cast<size_t>(cfg_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + cfg_.top_k, cand_.end(), by_logit);
    n = static_cast<size_t>(cfg_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }

  auto softmax = [&](size_t count) {
    const float mx = cand_[0].logit;
    double sum = 0;
    for (size_t i = 0; i < count; ++i) sum += cand_[i].p = std::exp(cand_[i].logit - mx);
    for (size_t i = 0; i < count; ++i) cand_[i].p = static_cast<float>(cand_[i].p / sum);
  };

  if (cfg_.top_p < 1.0f) {
    softmax(n);
    double cum = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += cand_[i].p;
      if (cum >= cfg_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = std::max<size_t>(1, keep);
  }
  if (cfg_.min_p > 0.0f) {
    // Keep tokens whose probability is at least min_p times the most likely one's.
    const float threshold = cand_[0].logit + std::log(cfg_.min_p);
    size_t keep = 1;
    while (keep < n && cand_[keep].logit >= threshold) ++keep;
    n = keep;
  }
  for (size_t i = 0; i < n; ++i) cand_[i].logit /= cfg_.temperature;
  softmax(n);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  double r = uniform(rng_), cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += cand_[i].p;
    if (r < cum) return cand_[i].id;
  }
  return cand_[n - 1].id;
}

}  // namespace endless
