#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "util/error.h"

namespace endless {
namespace {

SamplerConfig plain(float temp) {
  SamplerConfig c;
  c.temperature = temp;
  c.top_k = 0;
  c.top_p = 1.0f;
  c.min_p = 0.0f;
  c.seed = 1;
  return c;
}

std::map<int32_t, int> histogram(Sampler& s, const std::vector<float>& logits, int n) {
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) ++h[s.sample(logits)];
  return h;
}

TEST(Sampler, GreedyPicksTheLargestLogit) {
  Sampler s(plain(0));
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -2.0f, 2.9f}), 1);
  EXPECT_EQ(argmax(std::vector<float>{-5, -1, -3}), 1);
  // Long rows (the vector part and the tail), the largest anywhere, ties to the first.
  for (size_t n : {1, 15, 16, 17, 100, 32000})
    for (size_t at : {size_t{0}, n / 2, n - 1}) {
      std::vector<float> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7919) % 1000) / 1000.f - 2.f;
      v[at] = 5.f;
      if (at + 3 < n) v[at + 3] = 5.f;
      EXPECT_EQ(argmax(v), static_cast<int32_t>(at)) << n << " " << at;
    }
  EXPECT_EQ(argmax(std::vector<float>{-INFINITY, -INFINITY}), 0);
  // Ties go to the first, with or without a penalty on other tokens (two ways through sample).
  EXPECT_EQ(s.sample(std::vector<float>{1, 4, 4, 2}), 1);
  SamplerConfig c = plain(0);
  c.repeat_penalty = 2.0f;
  Sampler p(c);
  p.accept(0);
  EXPECT_EQ(p.sample(std::vector<float>{1, 4, 4, 2}), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  const std::vector<float> logits = {1, 2, 3, 2.5f, 0.5f, 1.5f};
  SamplerConfig c = plain(1.0f);
  c.seed = 42;
  Sampler a(c), b(c);
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a.sample(logits));
    tb.push_back(b.sample(logits));
  }
  EXPECT_EQ(ta, tb);
  c.seed = 43;
  Sampler d(c);
  std::vector<int32_t> td;
  for (int i = 0; i < 200; ++i) td.push_back(d.sample(logits));
  EXPECT_NE(ta, td);
  a.reset();
  EXPECT_EQ(a.sample(logits), ta[0]);
}

TEST(Sampler, TemperatureOneFollowsTheSoftmax) {
  const std::vector<float> logits = {0.0f, std::log(3.0f)};  // p = 1/4, 3/4
  Sampler s(plain(1.0f));
  const auto h = histogram(s, logits, 20000);
  EXPECT_NEAR(h.at(1) / 20000.0, 0.75, 0.02);
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  SamplerConfig c = plain(5.0f);  // flat enough that everything would appear
  c.top_k = 2;
  Sampler s(c);
  const auto h = histogram(s, {1, 5, 2, 4, 3}, 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_TRUE(h.count(1) && h.count(3));
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  SamplerConfig c = plain(1.0f);
  c.top_p = 0.7f;
  Sampler s(c);
  // p ~ 0.6, 0.3, 0.1: the nucleus reaching 0.7 is the first two.
  const std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  const auto h = histogram(s, logits, 3000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_GT(h.at(1), 500);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplerConfig c = plain(1.0f);
  c.min_p = 0.2f;
  Sampler s(c);
  // Relative to the best (1.0): 0.5 stays, 0.1 goes.
  const std::vector<float> logits = {0.0f, std::log(0.5f), std::log(0.1f)};
  const auto h = histogram(s, logits, 3000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_TRUE(h.count(0) && h.count(1));
}

TEST(Sampler, RepetitionPenaltyDemotesRecentTokens) {
  SamplerConfig c = plain(0);
  c.repeat_penalty = 2.0f;
  Sampler s(c);
  const std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);  // 3.0 / 2 = 1.5 < 2.0
  EXPECT_EQ(s.sample(logits), 1);
  // Negative logits are multiplied, pushing them further down.
  SamplerConfig n = plain(0);
  n.repeat_penalty = 3.0f;
  Sampler t(n);
  t.accept(1);
  EXPECT_EQ(t.sample(std::vector<float>{-1.0f, -0.5f}), 0);  // -0.5 * 3 = -1.5
}

TEST(Sampler, RejectsInvalidSettings) {
  SamplerConfig c = plain(1.0f);
  c.top_p = 1.5f;
  EXPECT_THROW(Sampler{c}, Error);
  c = plain(1.0f);
  c.repeat_penalty = 0;
  EXPECT_THROW(Sampler{c}, Error);
  c = plain(NAN);
  EXPECT_THROW(Sampler{c}, Error);
}

}  // namespace
}  // namespace endless
