// Invariants of every cache policy: what is retained, in which order, at which positions, and
// that memory stays within the stated bound however long the stream and however it is batched.
#include "memory/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "util/error.h"

namespace endless {
namespace {

// Feeds `total` tokens in random batch sizes. Each stored key holds (stream position, key
// position); for every new token the spans are checked against `expect`, which returns the
// stream positions that token should see, in cache order.
template <typename Expect>
void drive(MemoryPolicy& p, int64_t total, int max_batch, uint32_t seed, Expect expect) {
  KVStore store(1, 2, p.capacity(), TensorType::F32);
  std::mt19937 rng(seed);
  std::vector<int64_t> slots(max_batch);
  std::vector<double> key_pos(max_batch);
  std::vector<Span> spans;
  int64_t t0 = 0;
  while (t0 < total) {
    const int n = static_cast<int>(std::min<int64_t>(total - t0, 1 + rng() % max_batch));
    p.begin_batch(n, store, slots.data(), key_pos.data());
    for (int i = 0; i < n; ++i) {
      ASSERT_GE(slots[i], 0);
      ASSERT_LT(slots[i], p.capacity());
      const float kv[2] = {static_cast<float>(t0 + i), static_cast<float>(key_pos[i])};
      store.write(0, slots[i], kv, kv);
    }
    for (int i = 0; i < n; ++i) {
      const int64_t t = t0 + i;
      p.spans(0, i, spans);
      std::vector<int64_t> seen;
      std::vector<double> distance;
      for (const Span& s : spans) {
        ASSERT_LE(0, s.begin);
        ASSERT_LE(s.end, p.capacity());
        for (int64_t slot = s.begin; slot < s.end; ++slot) {
          float kv[2];
          store.read_key(0, slot, kv);
          seen.push_back(static_cast<int64_t>(kv[0]));
          distance.push_back(s.query_pos - kv[1]);
        }
      }
      const std::vector<int64_t> want = expect(t);
      ASSERT_EQ(seen, want) << "token " << t;
      // In the cache the retained tokens sit at positions 0..n-1 and the query at n-1: the
      // RoPE distance to the j-th retained token must be n-1-j.
      for (size_t j = 0; j < distance.size(); ++j)
        ASSERT_DOUBLE_EQ(distance[j], static_cast<double>(want.size() - 1 - j)) << "token " << t;
    }
    p.end_batch(n);
    t0 += n;
  }
  EXPECT_EQ(p.n_seen(), total);
}

std::vector<int64_t> range(int64_t a, int64_t b) {
  std::vector<int64_t> r;
  for (int64_t i = a; i < b; ++i) r.push_back(i);
  return r;
}

TEST(FullPolicy, SeesEverythingThenRefuses) {
  MemoryConfig c;
  c.policy = "full";
  c.n_ctx = 100;
  auto p = make_policy(c);
  EXPECT_EQ(p->capacity(), 100);
  drive(*p, 100, 16, 1, [](int64_t t) { return range(0, t + 1); });
  KVStore store(1, 2, p->capacity(), TensorType::F32);
  int64_t slot;
  double pos;
  try {
    p->begin_batch(1, store, &slot, &pos);
    FAIL() << "expected a context-full error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context full"), std::string::npos);
  }
}

TEST(SinkPolicy, KeepsSinksAndRecentWindowAtCachePositions) {
  for (int max_batch : {1, 7, 64}) {
    MemoryConfig c;
    c.policy = "sink";
    c.n_sink = 4;
    c.window = 32;
    c.max_batch = max_batch;
    auto p = make_policy(c);
    EXPECT_EQ(p->describe(), "sink 4+28");
    drive(*p, 1000, max_batch, 2 + max_batch, [](int64_t t) {
      if (t < 32) return range(0, t + 1);
      auto r = range(0, 4);
      auto w = range(t - 27, t + 1);
      r.insert(r.end(), w.begin(), w.end());
      return r;
    });
    EXPECT_EQ(p->retained(), 32);
    EXPECT_EQ(p->capacity(), 32 + max_batch);  // the bound does not depend on the stream length
  }
}

TEST(SinkPolicy, WindowWithoutSinks) {
  MemoryConfig c;
  c.policy = "window";
  c.window = 16;
  c.max_batch = 5;
  auto p = make_policy(c);
  drive(*p, 300, 5, 9, [](int64_t t) { return range(std::max<int64_t>(0, t - 15), t + 1); });
  EXPECT_EQ(p->retained(), 16);
}

TEST(SinkPolicy, RejectsWindowNotLargerThanSinks) {
  MemoryConfig c;
  c.policy = "sink";
  c.n_sink = 8;
  c.window = 8;
  EXPECT_THROW(make_policy(c), Error);
}

TEST(ShiftPolicy, DiscardsHalfAfterKeptPrefix) {
  MemoryConfig c;
  c.policy = "shift";
  c.n_ctx = 20;
  c.n_keep = 2;
  c.max_batch = 1;
  auto p = make_policy(c);
  // Reference model of llama.cpp's context shift with one token per step.
  std::vector<int64_t> cache;
  drive(*p, 200, 1, 3, [&](int64_t t) {
    if (static_cast<int64_t>(cache.size()) + 1 > 20) {
      const int64_t n_discard = (static_cast<int64_t>(cache.size()) - 2) / 2;
      cache.erase(cache.begin() + 2, cache.begin() + 2 + n_discard);
    }
    cache.push_back(t);
    return cache;
  });
  EXPECT_LE(p->retained(), 20);
  EXPECT_GE(p->retained(), 10);
}

TEST(Policy, UnknownNameIsAnError) {
  MemoryConfig c;
  c.policy = "magic";
  EXPECT_THROW(make_policy(c), Error);
}

}  // namespace
}  // namespace endless
