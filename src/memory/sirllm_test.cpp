// SirLLM: which tokens are kept (scores, ties, decay, markers), at which positions, within the
// stated memory bound, and that its state survives a snapshot.
#include "memory/sirllm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "util/error.h"

namespace endless {
namespace {

struct Stream {
  int n_sink = 4;
  int64_t window = 40, keep = 8;
  int max_batch = 7;
  double decay = 0.5;
  double max_nll = 0;  // noise ceiling (0: none)
  // Raw self-information of each position (reported after the batch that predicted it), and
  // whether a turn ends just before the batch starting at t0.
  std::function<float(int64_t)> raw = [](int64_t) { return 0.0f; };
  std::function<bool(int64_t)> turn_before = [](int64_t) { return false; };
  bool report = true;
};

// The kept set an independent reference expects at the start of the batch at t0: the `keep`
// best tokens that left the recent window, ranked by decayed score, newer first among equals.
std::vector<int64_t> expected_kept(const Stream& s, int64_t t0, const std::vector<int64_t>& turn_of) {
  const int64_t recent = s.window - s.n_sink - s.keep;
  const int64_t frontier = t0 - recent + 1;
  std::vector<int64_t> cand;
  for (int64_t p = s.n_sink; p < frontier; ++p) cand.push_back(p);
  // raw * decay^(turns - turn) ordered as raw * (1/decay)^turn: with decay 1/2 and small integer
  // scores both sides are exact.
  auto raw = [&](int64_t p) { return !s.report || (s.max_nll > 0 && s.raw(p) > s.max_nll) ? 0.0 : s.raw(p); };
  auto eff = [&](int64_t p) { return raw(p) * std::pow(1.0 / s.decay, turn_of[p]); };
  std::stable_sort(cand.begin(), cand.end(), [&](int64_t a, int64_t b) {
    if (eff(a) != eff(b)) return eff(a) > eff(b);
    return a > b;
  });
  if (static_cast<int64_t>(cand.size()) > s.keep) cand.resize(s.keep);
  std::sort(cand.begin(), cand.end());
  return cand;
}

// Streams `total` tokens in random batch sizes, checking every token's spans: the positions it
// sees (sinks, kept set, recent window) and that their RoPE distances are those of consecutive
// cache positions.
void run_stream(const Stream& s, int64_t total, uint32_t seed) {
  SirLLMPolicy p(s.n_sink, s.window, s.keep, s.decay, {}, s.max_batch, 0, s.max_nll);
  KVStore store(1, 2, p.capacity(), TensorType::F32);
  std::mt19937 rng(seed);
  std::vector<int64_t> slots(s.max_batch), turn_of;
  std::vector<double> key_pos(s.max_batch);
  std::vector<Span> spans;
  const int64_t recent = s.window - s.n_sink - s.keep;
  int64_t turns = 0;
  for (int64_t t0 = 0; t0 < total;) {
    if (s.turn_before(t0)) {
      p.end_turn();
      ++turns;
    }
    const int n = static_cast<int>(std::min<int64_t>(total - t0, 1 + rng() % s.max_batch));
    for (int i = 0; i < n; ++i) turn_of.push_back(turns);
    p.begin_batch(n, store, slots.data(), key_pos.data());
    for (int i = 0; i < n; ++i) {
      ASSERT_GE(slots[i], 0);
      ASSERT_LT(slots[i], p.capacity());
      const float kv[2] = {static_cast<float>(t0 + i), static_cast<float>(key_pos[i])};
      store.write(0, slots[i], kv, kv);
    }
    const std::vector<int64_t> kept = expected_kept(s, t0, turn_of);
    ASSERT_EQ(p.kept(), kept) << "batch at " << t0;
    for (int i = 0; i < n; ++i) {
      const int64_t t = t0 + i;
      std::vector<int64_t> want;
      for (int64_t q = 0; q < std::min<int64_t>(s.n_sink, t + 1); ++q) want.push_back(q);
      if (t >= s.n_sink) {
        want.insert(want.end(), kept.begin(), kept.end());
        for (int64_t q = std::max<int64_t>(s.n_sink, t - recent + 1); q <= t; ++q) want.push_back(q);
      }
      p.spans(0, i, spans);
      std::vector<int64_t> seen;
      std::vector<double> distance;
      for (const Span& sp : spans) {
        ASSERT_LE(0, sp.begin);
        ASSERT_LE(sp.end, p.capacity());
        for (int64_t slot = sp.begin; slot < sp.end; ++slot) {
          float kv[2];
          store.read_key(0, slot, kv);
          seen.push_back(static_cast<int64_t>(kv[0]));
          distance.push_back(sp.query_pos - kv[1]);
        }
      }
      ASSERT_EQ(seen, want) << "token " << t;
      ASSERT_LE(static_cast<int64_t>(seen.size()), s.window);
      for (size_t j = 0; j < distance.size(); ++j)
        ASSERT_DOUBLE_EQ(distance[j], static_cast<double>(want.size() - 1 - j)) << "token " << t;
    }
    p.end_batch(n);
    // As a streaming evaluation reports them: the NLL of each token the batch predicted, the
    // last one being the next batch's first token.
    if (s.report) {
      std::vector<float> nll;
      for (int64_t q = t0 + 1; q <= t0 + n; ++q) nll.push_back(s.raw(q));
      p.observe_nll(t0 + 1, nll.data(), n);
    }
    t0 += n;
  }
  EXPECT_EQ(p.turns(), turns);
}

TEST(SirLLMPolicy, WithoutScoresKeepsTheMostRecentLikeSink) {
  Stream s;
  s.report = false;
  for (uint32_t seed : {1u, 2u, 3u}) run_stream(s, 400, seed);
}

TEST(SirLLMPolicy, KeepsTheHighestScoresNewerFirstAmongEquals) {
  Stream s;
  // Few distinct values, so ties are common.
  s.raw = [](int64_t p) { return static_cast<float>((p * 7919) % 5); };
  for (uint32_t seed : {1u, 2u, 3u}) run_stream(s, 500, seed);
  s.max_batch = 1;  // decode: one token per pass
  run_stream(s, 300, 4);
}

TEST(SirLLMPolicy, ScoresDecayAtTurnBoundaries) {
  Stream s;
  s.raw = [](int64_t p) { return static_cast<float>(1 + (p * 31) % 7); };
  s.turn_before = [](int64_t t0) { return t0 > 0 && t0 % 3 == 0; };
  for (uint32_t seed : {5u, 6u}) run_stream(s, 500, seed);
}

// A token less likely than a uniform guess (NLL above the ceiling) is noise to the model: it
// scores 0, so the kept set holds the most surprising tokens below the ceiling.
TEST(SirLLMPolicy, TokensAboveTheNoiseCeilingScoreZero) {
  Stream s;
  s.max_nll = 6;
  s.raw = [](int64_t p) { return static_cast<float>((p * 7919) % 11); };  // 0..10: some above 6
  s.turn_before = [](int64_t t0) { return t0 > 0 && t0 % 5 == 0; };
  for (uint32_t seed : {7u, 8u}) run_stream(s, 500, seed);
  SirLLMPolicy p(1, 10, 2, 0.5, {}, 4, 0, 6.0);
  KVStore store(1, 2, p.capacity(), TensorType::F32);
  int64_t slots[4];
  double pos[4];
  p.begin_batch(4, store, slots, pos);
  p.end_batch(4);
  const float nll[3] = {6.0f, 6.5f, 25.0f};
  p.observe_nll(1, nll, 3);
  EXPECT_FLOAT_EQ(p.score(1), 6.0f);  // at the ceiling: kept for its information
  EXPECT_FLOAT_EQ(p.score(2), 0.0f);
  EXPECT_FLOAT_EQ(p.score(3), 0.0f);
  EXPECT_NE(p.describe().find("max nll 6"), std::string::npos) << p.describe();
}

TEST(SirLLMPolicy, ScoresDecayByTheFactor) {
  SirLLMPolicy p(1, 10, 2, 0.5, {}, 4);
  KVStore store(1, 2, p.capacity(), TensorType::F32);
  int64_t slots[4];
  double pos[4];
  p.begin_batch(4, store, slots, pos);
  p.end_batch(4);
  const float nll[3] = {2.0f, 4.0f, 8.0f};
  p.observe_nll(1, nll, 3);
  EXPECT_FLOAT_EQ(p.score(2), 4.0f);
  p.end_turn();
  EXPECT_FLOAT_EQ(p.score(1), 1.0f);
  EXPECT_FLOAT_EQ(p.score(2), 2.0f);
  EXPECT_FLOAT_EQ(p.score(3), 4.0f);
  // A score that arrives after the turn ended is decayed as if it had been there.
  const float late = 6.0f;
  p.observe_nll(3, &late, 1);
  EXPECT_FLOAT_EQ(p.score(3), 3.0f);
  EXPECT_TRUE(std::isnan(p.score(9)));
}

TEST(SirLLMPolicy, EvictsTheLowestScoreFirst) {
  // 1 sink, 2 kept, 2 recent. Scores by position: the kept set must follow them exactly.
  SirLLMPolicy p(1, 5, 2, 0.9, {}, 1);
  KVStore store(1, 2, p.capacity(), TensorType::F32);
  const float score[] = {0, 5, 1, 3, 0.5f, 4, 2, 9, 0, 0, 0, 0};
  const std::vector<std::vector<int64_t>> kept_before = {
      {}, {}, {}, {1}, {1, 2}, {1, 3}, {1, 3}, {1, 5}, {1, 5}, {1, 7}, {1, 7}, {1, 7}};
  int64_t slot;
  double pos;
  for (int64_t t = 0; t < 12; ++t) {
    p.begin_batch(1, store, &slot, &pos);
    EXPECT_EQ(p.kept(), kept_before[t]) << "before token " << t;
    p.end_batch(1);
    if (t + 1 < 12) p.observe_nll(t + 1, &score[t + 1], 1);
  }
}

TEST(SirLLMPolicy, MarkerEndsTurns) {
  SirLLMPolicy p(0, 20, 4, 0.5, {7, 8}, 8);
  KVStore store(1, 2, p.capacity(), TensorType::F32);
  std::vector<int64_t> slots(8);
  std::vector<double> pos(8);
  const int32_t a[] = {1, 7, 8, 2, 7};
  p.observe_tokens(a, 5);
  EXPECT_EQ(p.turns(), 1);
  p.begin_batch(5, store, slots.data(), pos.data());
  p.end_batch(5);
  const int32_t b[] = {8, 7, 7, 8};  // completes the marker across batches, then once more
  p.observe_tokens(b, 4);
  EXPECT_EQ(p.turns(), 3);
  p.begin_batch(4, store, slots.data(), pos.data());
  p.end_batch(4);
  // Token 1 (first turn) and token 3 (second turn): the same raw score, decayed three times and
  // twice.
  const float nll[4] = {4, 4, 4, 4};
  p.observe_nll(0, nll, 4);
  EXPECT_FLOAT_EQ(p.score(1), 0.5f);
  EXPECT_FLOAT_EQ(p.score(3), 1.0f);
}

TEST(SirLLMPolicy, ATurnEndsEveryDecayIntervalOfTokens) {
  // Turns end after stream positions 2, 5, 8, ... (every 3 tokens), whatever the batches.
  SirLLMPolicy p(0, 20, 4, 0.5, {}, 8, 3);
  EXPECT_EQ(p.describe(), "sirllm 0+4+16 decay 0.5 every 3");
  KVStore store(1, 2, p.capacity(), TensorType::F32);
  std::vector<int64_t> slots(8);
  std::vector<double> pos(8);
  const int32_t ids[8] = {};
  for (int n : {2, 1, 4, 2}) {  // positions [0, 2), [2, 3), [3, 7), [7, 9)
    p.observe_tokens(ids, n);
    p.begin_batch(n, store, slots.data(), pos.data());
    p.end_batch(n);
  }
  EXPECT_EQ(p.turns(), 3);
  // Token 1 (turn 0) is decayed three times, token 4 (turn 1) twice, token 8 (turn 2, which it
  // closes) once.
  const float nll[9] = {8, 8, 8, 8, 8, 8, 8, 8, 8};
  p.observe_nll(0, nll, 9);
  EXPECT_FLOAT_EQ(p.score(1), 1.0f);
  EXPECT_FLOAT_EQ(p.score(4), 2.0f);
  EXPECT_FLOAT_EQ(p.score(8), 4.0f);
  // A marker and the interval ending on the same token end one turn.
  SirLLMPolicy q(0, 20, 4, 0.5, {7}, 8, 2);
  const int32_t m[2] = {1, 7};
  q.observe_tokens(m, 2);
  EXPECT_EQ(q.turns(), 1);
  EXPECT_THROW(SirLLMPolicy(0, 20, 4, 0.5, {}, 8, -1), Error);
}

TEST(SirLLMPolicy, SnapshotStateRoundTrips) {
  Stream s;
  s.raw = [](int64_t q) { return static_cast<float>((q * 13) % 11); };
  SirLLMPolicy a(s.n_sink, s.window, s.keep, s.decay, {3}, s.max_batch);
  SirLLMPolicy b(s.n_sink, s.window, s.keep, s.decay, {3}, s.max_batch);
  KVStore store(1, 2, a.capacity(), TensorType::F32);
  std::vector<int64_t> slots(s.max_batch);
  std::vector<double> pos(s.max_batch);
  std::vector<Span> sa, sb;
  std::mt19937 rng(9);
  std::vector<int32_t> ids(s.max_batch);
  for (int64_t t0 = 0; t0 < 300;) {
    const int n = 1 + static_cast<int>(rng() % s.max_batch);
    for (auto& id : ids) id = static_cast<int32_t>(rng() % 5);
    // b starts from a's snapshot half-way, then both see the same stream.
    if (t0 >= 150 && b.n_seen() == 0) b.load_state(a.save_state());
    std::vector<SirLLMPolicy*> live = {&a};
    if (b.n_seen() > 0) live.push_back(&b);
    for (SirLLMPolicy* p : live) {
      p->observe_tokens(ids.data(), n);
      p->begin_batch(n, store, slots.data(), pos.data());
    }
    if (live.size() == 2)
      for (int i = 0; i < n; ++i) {
        a.spans(0, i, sa);
        b.spans(0, i, sb);
        ASSERT_EQ(sa.size(), sb.size());
        for (size_t j = 0; j < sa.size(); ++j) {
          EXPECT_EQ(sa[j].begin, sb[j].begin);
          EXPECT_EQ(sa[j].end, sb[j].end);
          EXPECT_EQ(sa[j].query_pos, sb[j].query_pos);
        }
      }
    std::vector<float> nll;
    for (int64_t q = t0 + 1; q <= t0 + n; ++q) nll.push_back(s.raw(q));
    for (SirLLMPolicy* p : live) {
      p->end_batch(n);
      p->observe_nll(t0 + 1, nll.data(), n);
    }
    t0 += n;
  }
  EXPECT_EQ(a.kept(), b.kept());
  EXPECT_EQ(a.turns(), b.turns());
  auto st = a.save_state();
  st.pop_back();
  EXPECT_THROW(b.load_state(st), Error);
}

TEST(SirLLMPolicy, RejectsBadSizes) {
  MemoryConfig c;
  c.policy = "sirllm";
  c.n_sink = 4;
  c.window = 12;
  c.sir_keep = 8;  // nothing left for the recent window
  EXPECT_THROW(make_policy(c), Error);
  c.sir_keep = 4;
  c.sir_decay = 0;
  EXPECT_THROW(make_policy(c), Error);
  c.sir_decay = 0.9;
  EXPECT_EQ(make_policy(c)->describe(), "sirllm 4+4+4 decay 0.9");
  c.sir_keep = -1;  // default: a quarter of the window after the sinks
  c.window = 516;
  EXPECT_EQ(make_policy(c)->describe(), "sirllm 4+128+384 decay 0.9");
}

}  // namespace
}  // namespace endless
