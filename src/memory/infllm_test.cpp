// InfLLM: block formation (un-rotated keys, values, numbering), representatives (the most
// attended tokens per head), retrieval (top-k by the mean query, copied into the cache once),
// the spans and positions attention sees, the memory bound, and the block store's RAM budget,
// disk tier and file checks.
#include "memory/infllm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "memory/sink.h"
#include "test_support.h"
#include "util/error.h"

namespace endless {
namespace {

constexpr int kLayers = 2;

// A model shape for the policy: heads of 4 dimensions, all rotating.
struct Shape {
  int n_heads = 2, n_kv_heads = 1, head_dim = 4;
  int kv_dim() const { return n_kv_heads * head_dim; }
  int q_dim() const { return n_heads * head_dim; }
  RopeConfig rope() const {
    RopeConfig r;
    r.head_dim = head_dim;
    r.n_rot = head_dim;
    return r;
  }
};

// The un-rotated key and the value of stream position p in a layer: distinct, smooth numbers.
// Keys vary more in some dimensions than in others, and at another rate in each layer.
void key_of(int64_t p, int layer, int kv_dim, float* k) {
  for (int d = 0; d < kv_dim; ++d)
    k[d] = ((d + layer) % 3 == 0 ? 3.0f : 1.0f) *
           std::sin((0.37f + 0.11f * layer) * static_cast<float>(p) + 1.3f * d + 0.5f * layer);
}
void value_of(int64_t p, int layer, int kv_dim, float* v) {
  for (int d = 0; d < kv_dim; ++d) v[d] = static_cast<float>(p) + 0.25f * d + 1000.0f * layer;
}

// Independent references for `keys` scoring, in double from key_of: the mean key of positions
// [end - w, end) in a layer, and a block's score, the sum over KV heads of the cosine between
// (recent - centre) and (m - centre).
std::vector<double> recent_mean_key(int layer, int kv, int64_t end, int64_t w) {
  std::vector<double> recent(kv, 0.0);
  std::vector<float> k(kv);
  for (int64_t t = end - w; t < end; ++t) {
    key_of(t, layer, kv, k.data());
    for (int e = 0; e < kv; ++e) recent[e] += k[e] / static_cast<double>(w);
  }
  return recent;
}
double centred_cosines(const Shape& shape, const std::vector<double>& recent, const std::vector<double>& centre,
                       const std::vector<double>& m) {
  const int hd = shape.head_dim;
  double sum = 0;
  for (int h = 0; h < shape.n_kv_heads; ++h) {
    double dot = 0, na = 0, nm = 0;
    for (int e = h * hd; e < (h + 1) * hd; ++e) {
      const double x = recent[e] - centre[e], y = m[e] - centre[e];
      dot += x * y;
      na += x * x;
      nm += y * y;
    }
    sum += dot / std::sqrt(na * nm);
  }
  return sum;
}
// The mean key of each of a policy's first nb blocks in a layer, and their centre.
std::vector<std::vector<double>> block_mean_keys(const InfLLMPolicy& p, int layer, int kv, int block, int64_t nb,
                                                 std::vector<double>* centre) {
  std::vector<std::vector<double>> mean(nb, std::vector<double>(kv, 0.0));
  std::vector<float> k(kv);
  centre->assign(kv, 0.0);
  for (int64_t b = 0; b < nb; ++b) {
    for (int j = 0; j < block; ++j) {
      key_of(p.block_first(b) + j, layer, kv, k.data());
      for (int e = 0; e < kv; ++e) mean[b][e] += k[e] / block;
    }
    for (int e = 0; e < kv; ++e) (*centre)[e] += mean[b][e] / static_cast<double>(nb);
  }
  return mean;
}

// Feeds a policy the way Engine::forward does: begin_batch, keys rotated at their key position
// and stored, then per layer the queries (before_attention) and, optionally, attention weights.
// The value's first element encodes the stream position (plus 1000 per layer).
struct Driver {
  InfLLMPolicy& p;
  Shape shape;
  Rope rope;
  KVStore store;
  std::vector<int64_t> slots;
  std::vector<double> key_pos;
  Driver(InfLLMPolicy& policy, const Shape& s, int max_batch)
      : p(policy), shape(s), rope(s.rope()), store(kLayers, s.kv_dim(), policy.capacity(), TensorType::F32),
        slots(max_batch), key_pos(max_batch) {
    p.set_model(s.rope(), kLayers, s.n_heads, s.n_kv_heads);
  }
  void begin(int n) {
    const int64_t t0 = p.n_seen();
    p.begin_batch(n, store, slots.data(), key_pos.data());
    std::vector<float> k(shape.kv_dim()), v(shape.kv_dim());
    for (int l = 0; l < kLayers; ++l)
      for (int i = 0; i < n; ++i) {
        ASSERT_GE(slots[i], 0);
        ASSERT_LT(slots[i], p.capacity());
        key_of(t0 + i, l, shape.kv_dim(), k.data());
        rope.apply(k.data(), shape.n_kv_heads, key_pos[i]);
        value_of(t0 + i, l, shape.kv_dim(), v.data());
        store.write(l, slots[i], k.data(), v.data());
      }
  }
  // weights(layer, t, head, t_key): the attention weight token t puts on the window key at
  // stream position t_key.
  void attend(int n, const std::function<float(int, int64_t, int, int64_t)>& weights) {
    std::vector<Span> spans;
    std::vector<float> v(shape.kv_dim());
    for (int l = 0; l < kLayers; ++l)
      for (int i = 0; i < n; ++i) {
        p.spans(l, i, spans);
        int64_t total = 0;
        for (const Span& sp : spans) total += sp.end - sp.begin;
        const Span& w = spans.back();  // the window
        for (int h = 0; h < shape.n_heads; ++h) {
          std::vector<float> wt(total, 0.0f);
          for (int64_t slot = w.begin; slot < w.end; ++slot) {
            store.read_value(l, slot, v.data());
            const auto pos = static_cast<int64_t>(std::lround(v[0] - 1000.0f * l));
            wt[total - (w.end - slot)] = weights(l, p.n_seen() + i, h, pos);
          }
          p.observe_attention(l, i, h, wt.data(), total);
        }
      }
  }
  // A whole batch: q (n * q_dim un-rotated queries, the same for every layer) or none.
  void feed(int n, const float* q, const std::function<float(int, int64_t, int, int64_t)>& weights = {}) {
    begin(n);
    if (q != nullptr)
      for (int l = 0; l < kLayers; ++l) p.before_attention(l, q, n, store);
    if (weights) attend(n, weights);
    p.end_batch(n);
  }
};

// The stream positions each key a new token sees encodes, and the query position of its span
// minus the key's position inside its block (for position-free keys: the RoPE distance).
struct Seen {
  std::vector<int64_t> pos;
  std::vector<double> query_pos;
};
Seen seen(const InfLLMPolicy& p, const KVStore& store, int layer, int i, int kv_dim) {
  std::vector<Span> spans;
  p.spans(layer, i, spans);
  Seen s;
  std::vector<float> v(kv_dim);
  for (const Span& sp : spans) {
    EXPECT_LE(0, sp.begin);
    EXPECT_LE(sp.end, p.capacity());
    for (int64_t slot = sp.begin; slot < sp.end; ++slot) {
      store.read_value(layer, slot, v.data());
      s.pos.push_back(std::lround(v[0] - 1000.0f * layer));
      s.query_pos.push_back(sp.query_pos);
    }
  }
  return s;
}

MemoryConfig config(int n_init, int64_t window, int block, int reps, int top_k, int max_batch) {
  MemoryConfig c;
  c.policy = "infllm";
  c.n_sink = n_init;
  c.window = window;
  c.block_size = block;
  c.block_reps = reps;
  c.top_k = top_k;
  c.max_batch = max_batch;
  c.kv_type = TensorType::F32;
  // InfLLM's own scoring in every layer, scored every batch, memory at the window's distance;
  // the tests of the other settings say so.
  c.mem_skip_layers = 0;
  c.use_query_scoring();
  c.mem_key_window = 32;
  c.mem_retrieve_every = 1;
  c.mem_distance = 0;
  return c;
}

TEST(InfLLMPolicy, DefaultsAreTheSettingThatMeetsIssue7) {
  // docs/streaming.md: 3 blocks of 64 at distance 200, keys scoring with parts 4, a key window of
  // 64 with half-life 16, whitening, consensus from layer 0, scored every 8 tokens.
  MemoryConfig c;
  c.policy = "infllm";
  c.n_sink = 4;
  c.window = 512;
  EXPECT_EQ(make_policy(c)->describe(),
            "infllm 4+508 top 3x64 r4 from layer 1 keys 64 parts 4 every 8 half-life 16 whiten consensus from 0 at 200");
  // InfLLM's query scoring needs the keys-only settings off; use_query_scoring does that.
  c.mem_score = "query";
  EXPECT_THROW(make_policy(c), Error);
  c.use_query_scoring();
  EXPECT_EQ(make_policy(c)->describe(), "infllm 4+508 top 3x64 r4 from layer 1 query every 8 at 200");
}

TEST(InfLLMPolicy, FormsBlocksOfUnrotatedKeysOnceTokensLeaveEveryWindow) {
  const Shape shape;
  const int n_init = 3, block = 8, max_batch = 9;
  const int64_t window = 19, local = window - n_init;
  InfLLMPolicy p(config(n_init, window, block, 2, 4, max_batch));
  Driver d(p, shape, max_batch);
  std::mt19937 rng(5);
  while (p.n_seen() < 400) {
    const int n = 1 + static_cast<int>(rng() % max_batch);
    const int64_t frontier = p.n_seen() - local + 1;
    d.feed(n, nullptr);
    // At a batch's start, the tokens no later query sees in its window make whole blocks.
    EXPECT_EQ(p.n_blocks(), std::max<int64_t>(0, frontier - n_init) / block) << "at " << p.n_seen();
  }
  ASSERT_GT(p.n_blocks(), 30);
  auto* bs = const_cast<BlockStore*>(p.block_store());
  std::vector<float> k(shape.kv_dim()), v(shape.kv_dim());
  for (int64_t b = 0; b < p.n_blocks(); ++b)
    for (int l = 0; l < kLayers; ++l) {
      const auto* data = reinterpret_cast<const float*>(bs->layer(b, l));
      for (int j = 0; j < block; ++j) {
        const int64_t pos = p.block_first(b) + j;
        key_of(pos, l, shape.kv_dim(), k.data());
        value_of(pos, l, shape.kv_dim(), v.data());
        for (int e = 0; e < shape.kv_dim(); ++e) {
          // Rotated at its position, stored, then rotated back: position-free again.
          EXPECT_NEAR(data[j * shape.kv_dim() + e], k[e], 2e-5) << "block " << b << " token " << j;
          EXPECT_EQ(data[(block + j) * shape.kv_dim() + e], v[e]);
        }
      }
    }
  EXPECT_EQ(p.block_first(0), n_init);
}

TEST(InfLLMPolicy, RepresentativeIsTheMeanKeyOfEachHeadsMostAttendedTokens) {
  const Shape shape;
  const int n_init = 2, block = 8, reps = 3;
  InfLLMPolicy p(config(n_init, 14, block, reps, 2, 4));
  Driver d(p, shape, 4);
  // Head h of layer l weights key position t by a value that depends only on (l, h, t): one token
  // at a time, every token is seen by the same number of queries, so the mass ranks as g does.
  auto g = [](int l, int h, int64_t t) { return 0.001f * static_cast<float>(1 + (t * 37 + h * 11 + l * 5) % 97); };
  while (p.n_seen() < 120) d.feed(1, nullptr, [&](int l, int64_t, int h, int64_t t) { return g(l, h, t); });
  ASSERT_GE(p.n_blocks(), 10);
  std::vector<float> k(shape.kv_dim());
  for (int64_t b = 0; b < p.n_blocks(); ++b)
    for (int l = 0; l < kLayers; ++l) {
      const std::vector<float> rep = p.representative(l, b);
      ASSERT_FALSE(rep.empty());
      for (int h = 0; h < shape.n_heads; ++h) {
        std::vector<int64_t> pos(block);
        for (int j = 0; j < block; ++j) pos[j] = p.block_first(b) + j;
        std::stable_sort(pos.begin(), pos.end(), [&](int64_t a, int64_t c) { return g(l, h, a) > g(l, h, c); });
        std::vector<double> mean(shape.head_dim, 0.0);
        for (int r = 0; r < reps; ++r) {
          key_of(pos[r], l, shape.kv_dim(), k.data());
          for (int e = 0; e < shape.head_dim; ++e) mean[e] += k[e] / reps;  // one kv head
        }
        for (int e = 0; e < shape.head_dim; ++e)
          EXPECT_NEAR(rep[h * shape.head_dim + e], mean[e], 3e-5) << "block " << b << " layer " << l << " head " << h;
      }
    }
}

TEST(InfLLMPolicy, RetrievesTheBlocksTheMeanQueryPointsAtAndPlacesThemBeforeTheWindow) {
  const Shape shape;
  const int n_init = 2, block = 4, top_k = 2;
  const int64_t window = 10, local = window - n_init;
  const Rope rope(shape.rope());
  for (bool compact : {false, true}) {
    MemoryConfig c = config(n_init, window, block, block, top_k, 3);
    c.mem_compact = compact;
    InfLLMPolicy p(c);
    Driver d(p, shape, 3);
    std::mt19937 rng(2);
    while (p.n_seen() < 200) d.feed(1 + static_cast<int>(rng() % 3), nullptr);
    ASSERT_GT(p.n_blocks(), 2 * top_k);
    for (int trial = 0; trial < 6; ++trial) {
      const int n = 1 + trial % 3;
      d.begin(n);
      const int64_t t = p.n_seen();
      for (int l = 0; l < kLayers; ++l) {
        std::vector<float> q(n * shape.q_dim());
        for (size_t e = 0; e < q.size(); ++e) q[e] = std::sin(1.7f * trial + 0.9f * e + l);
        p.before_attention(l, q.data(), n, d.store);
        // Independently: the batch's mean query, rotated to the memory's distance, against every
        // representative; the top-k (ties to the newer block), in stream order.
        std::vector<float> mean(shape.q_dim());
        for (int e = 0; e < shape.q_dim(); ++e) {
          double sum = 0;
          for (int i = 0; i < n; ++i) sum += q[i * shape.q_dim() + e];
          mean[e] = static_cast<float>(sum / n);
        }
        rope.apply(mean.data(), shape.n_heads, static_cast<double>(local));
        std::vector<std::pair<double, int64_t>> score;
        for (int64_t b = 0; b < p.n_blocks(); ++b) {
          double dot = 0;
          for (int e = 0; e < shape.q_dim(); ++e) dot += mean[e] * p.representative(l, b)[e];
          score.push_back({dot, b});
        }
        std::sort(score.begin(), score.end(), std::greater<>());
        std::vector<int64_t> want;
        for (int k = 0; k < top_k; ++k) want.push_back(score[k].second);
        std::sort(want.begin(), want.end());
        const auto& got = p.retrieved(l);
        EXPECT_EQ(got, want) << "trial " << trial << " layer " << l;

        // Sinks, the retrieved blocks' tokens, the window.
        const Seen s = seen(p, d.store, l, 0, shape.kv_dim());
        ASSERT_EQ(static_cast<int64_t>(s.pos.size()), n_init + top_k * block + local);
        for (int64_t j = 0; j < n_init; ++j) EXPECT_EQ(s.pos[j], j);
        std::vector<int64_t> mem, seen_mem(s.pos.begin() + n_init, s.pos.end() - local);
        for (int64_t b : got)
          for (int j = 0; j < block; ++j) mem.push_back(p.block_first(b) + j);
        if (!compact) std::sort(seen_mem.begin(), seen_mem.end());  // fixed: any slot order
        EXPECT_EQ(seen_mem, mem);
        for (int64_t j = 0; j < local; ++j) EXPECT_EQ(s.pos[s.pos.size() - local + j], t - local + 1 + j);
        (void)t;

        // Distances. The window's keys sit at their stream positions and the query at t: exact.
        for (int64_t j = 0; j < local; ++j) EXPECT_EQ(s.query_pos[s.pos.size() - local + j], t);
        // Memory keys are position-free (compact: rotated at their offset in the block): fixed,
        // all at the window's length; compact, at consecutive cache positions after the sinks,
        // with the window after them and the query last.
        const int64_t n_mem = top_k * block;
        const int64_t q_cache = compact ? n_init + n_mem + local - 1 : n_init + local - 1;
        for (int64_t j = 0; j < n_mem; ++j) {
          const double distance = s.query_pos[n_init + j] - (compact ? j % block : 0);
          EXPECT_DOUBLE_EQ(distance, compact ? static_cast<double>(q_cache - (n_init + j)) : static_cast<double>(local))
              << "memory token " << j;
        }
        // Sinks keep their stream (= cache) positions.
        for (int64_t j = 0; j < n_init; ++j) EXPECT_EQ(s.query_pos[j], q_cache);
      }
      p.end_batch(n);
    }
  }
}

TEST(InfLLMPolicy, CopiesABlockIntoTheCacheOnlyWhenItWasNotThere) {
  const Shape shape;
  InfLLMPolicy p(config(2, 10, 4, 4, 3, 4));
  Driver d(p, shape, 4);
  while (p.n_seen() < 100) d.feed(4, nullptr);
  std::vector<float> q(shape.q_dim());
  std::vector<std::vector<int64_t>> before(kLayers);
  for (int step = 0; step < 30; ++step) {
    for (int e = 0; e < shape.q_dim(); ++e) q[e] = std::sin(0.3f * step * (e + 1));
    const int64_t loads = p.blocks_loaded();
    d.feed(1, q.data());
    // Only blocks that were not retrieved for the previous token are copied.
    int64_t fresh = 0;
    for (int l = 0; l < kLayers; ++l) {
      const auto& now = p.retrieved(l);
      EXPECT_EQ(now.size(), 3u);
      for (int64_t b : now) fresh += std::find(before[l].begin(), before[l].end(), b) == before[l].end();
      before[l] = now;
    }
    EXPECT_EQ(p.blocks_loaded() - loads, fresh) << "step " << step;
    if (step == 0) {
      EXPECT_EQ(fresh, 3 * kLayers);
    }
  }
}

TEST(InfLLMPolicy, WithoutRetrievalItIsSink) {
  // With top-k 0 (or before retrieval runs) every token sees exactly what `sink` shows it, at
  // the same distances.
  const Shape shape;
  for (int top_k : {0, 4}) {
    InfLLMPolicy p(config(4, 20, 4, 2, top_k, 6));
    SinkPolicy sink(4, 20, 6);
    Driver d(p, shape, 6);
    KVStore ss(1, 2, sink.capacity(), TensorType::F32);
    std::mt19937 rng(7);
    std::vector<int64_t> slots(6);
    std::vector<double> kp(6);
    std::vector<Span> sp;
    while (p.n_seen() < 300) {
      const int n = 1 + static_cast<int>(rng() % 6);
      const int64_t t0 = p.n_seen();
      d.begin(n);
      sink.begin_batch(n, ss, slots.data(), kp.data());
      for (int i = 0; i < n; ++i) {
        const float kv[2] = {static_cast<float>(t0 + i), static_cast<float>(kp[i])};
        ss.write(0, slots[i], kv, kv);
      }
      for (int i = 0; i < n; ++i) {
        sink.spans(0, i, sp);
        std::vector<int64_t> want;
        std::vector<double> want_distance;
        for (const Span& x : sp)
          for (int64_t slot = x.begin; slot < x.end; ++slot) {
            float kv[2];
            ss.read_key(0, slot, kv);
            want.push_back(static_cast<int64_t>(kv[0]));
            want_distance.push_back(x.query_pos - kv[1]);
          }
        for (int l = 0; l < kLayers; ++l) {
          const Seen s = seen(p, d.store, l, i, shape.kv_dim());
          ASSERT_EQ(s.pos, want) << "token " << t0 + i;
          for (size_t j = 0; j < want.size(); ++j)
            ASSERT_DOUBLE_EQ(s.query_pos[j] - static_cast<double>(s.pos[j]), want_distance[j]);
        }
      }
      sink.end_batch(n);
      p.end_batch(n);
    }
    EXPECT_EQ(p.n_blocks() > 0, top_k > 0);
  }
}

TEST(InfLLMPolicy, StateRoundTrips) {
  const Shape shape;
  const auto dir = endless::testing::scratch_dir("infllm-state");
  for (int variant = 0; variant < 3; ++variant) {
    const bool disk = variant == 1;
    MemoryConfig c = config(2, 12, 4, 2, 3, 5);
    if (variant == 2) {  // scoring by keys: the blocks' mean keys are state too; with a stride,
      c.mem_score = "keys";  // so is the last choice
      c.mem_skip_layers = 1;
      c.mem_retrieve_every = 3;
    }
    if (disk) {
      c.mem_ram_mib = 0;  // every block goes to the file
      c.memory_dir = dir.string();
    }
    InfLLMPolicy a(c), b(c);
    Driver da(a, shape, 5), db(b, shape, 5);
    std::mt19937 rng(3);
    auto w = [](int, int64_t t, int h, int64_t k) { return 0.01f * static_cast<float>((t + k * 3 + h) % 7); };
    while (a.n_seen() < 150) da.feed(1 + static_cast<int>(rng() % 5), nullptr, w);
    b.load_state(a.save_state());
    db.store = da.store;
    std::vector<float> q(5 * shape.q_dim());  // up to a batch of queries
    for (int step = 0; step < 40; ++step) {
      for (auto& x : q) x = std::sin(0.1f * step + x);
      const int n = 1 + static_cast<int>(rng() % 5);
      da.feed(n, q.data(), w);
      db.feed(n, q.data(), w);
      for (int l = 0; l < kLayers; ++l) {
        EXPECT_EQ(a.retrieved(l), b.retrieved(l));
        for (int64_t blk = a.first_alive_block(); blk < a.n_blocks(); ++blk) {
          if (variant == 2) {  // no representatives; the mean keys instead
            ASSERT_TRUE(a.representative(l, blk).empty());
            for (int e = 0; e < shape.kv_dim(); ++e) ASSERT_EQ(a.mean_key(l, blk)[e], b.mean_key(l, blk)[e]);
            continue;
          }
          for (int e = 0; e < shape.q_dim(); ++e)
            ASSERT_EQ(a.representative(l, blk)[e], b.representative(l, blk)[e]);
        }
      }
    }
    if (disk) {
      EXPECT_GT(a.block_store()->on_disk(), 0);
    }
    auto st = a.save_state();
    st.pop_back();
    InfLLMPolicy c2(c);
    Driver dc(c2, shape, 5);
    EXPECT_THROW(c2.load_state(st), Error);
  }
}

TEST(InfLLMPolicy, LayersBelowTheSkipRetrieveNothing) {
  const Shape shape;
  MemoryConfig c = config(2, 10, 4, 4, 2, 3);
  c.mem_skip_layers = 1;
  InfLLMPolicy p(c);
  Driver d(p, shape, 3);
  while (p.n_seen() < 100) d.feed(3, nullptr);
  std::vector<float> q(shape.q_dim(), 0.5f);
  d.begin(1);
  for (int l = 0; l < kLayers; ++l) p.before_attention(l, q.data(), 1, d.store);
  EXPECT_TRUE(p.retrieved(0).empty());
  EXPECT_EQ(p.retrieved(1).size(), 2u);
  // Layer 0 sees what `sink` shows: the sinks and the window, nothing from memory.
  const Seen s = seen(p, d.store, 0, 0, shape.kv_dim());
  const int64_t local = 10 - 2, t = p.n_seen();
  ASSERT_EQ(static_cast<int64_t>(s.pos.size()), 2 + local);
  for (int64_t j = 0; j < local; ++j) EXPECT_EQ(s.pos[2 + j], t - local + 1 + j);
  p.end_batch(1);
}

// With parts > 1 a block holds the mean key of each part and scores as its best part; the centre
// is the mean over every part of every block.
TEST(InfLLMPolicy, ScoresByKeysWithTheCentredCosineOfMeanKeys) {
  for (int parts : {1, 2}) {
    const Shape shape;
    const int n_init = 2, block = 4, top_k = 2, key_window = 5, len = block / parts;
    MemoryConfig c = config(n_init, 10, block, 2, top_k, 3);
    c.mem_score = "keys";
    c.mem_key_window = key_window;
    c.mem_key_parts = parts;
    InfLLMPolicy p(c);
    Driver d(p, shape, 3);
    std::mt19937 rng(4);
    while (p.n_seen() < 120) d.feed(1 + static_cast<int>(rng() % 3), nullptr);
    ASSERT_GT(p.n_blocks(), 2 * top_k);
    const int kv = shape.kv_dim();
    std::vector<float> k(kv);
    int compared = 0;
    for (int trial = 0; trial < 8; ++trial) {
      const int n = 1 + trial % 3;
      d.begin(n);
      const int64_t end = p.n_seen() + n;
      std::vector<float> q(n * shape.q_dim(), 0.25f);  // not used by this score
      for (int l = 0; l < kLayers; ++l) {
        p.before_attention(l, q.data(), n, d.store);
        // Independently, from the keys themselves: part means, their centre, the recent mean.
        const int64_t first = p.first_alive_block(), nb = p.n_blocks();
        std::vector<std::vector<double>> mean((nb - first) * parts, std::vector<double>(kv, 0.0));
        std::vector<double> centre(kv, 0.0);
        for (int64_t b = first; b < nb; ++b) {
          const std::vector<float> got = p.mean_key(l, b);
          ASSERT_EQ(got.size(), static_cast<size_t>(parts * kv));
          for (int part = 0; part < parts; ++part) {
            std::vector<double>& m = mean[(b - first) * parts + part];
            for (int j = part * len; j < (part + 1) * len; ++j) {
              key_of(p.block_first(b) + j, l, kv, k.data());
              for (int e = 0; e < kv; ++e) m[e] += k[e] / len;
            }
            for (int e = 0; e < kv; ++e) {
              EXPECT_NEAR(got[part * kv + e], m[e], 3e-5);
              centre[e] += m[e] / static_cast<double>((nb - first) * parts);
            }
          }
        }
        const std::vector<double> recent = recent_mean_key(l, kv, end, std::max(key_window, n));
        std::vector<std::pair<double, int64_t>> score;
        for (int64_t b = first; b < nb; ++b) {
          double best = -1e300;
          for (int part = 0; part < parts; ++part)
            best = std::max(best, centred_cosines(shape, recent, centre, mean[(b - first) * parts + part]));
          score.push_back({best, b});
        }
        std::sort(score.begin(), score.end(), std::greater<>());
        // Only clear winners are compared (float rounding may swap near-ties).
        if (score[top_k - 1].first - score[top_k].first < 1e-4) continue;
        std::vector<int64_t> want;
        for (int j = 0; j < top_k; ++j) want.push_back(score[j].second);
        std::sort(want.begin(), want.end());
        EXPECT_EQ(p.retrieved(l), want) << "parts " << parts << " trial " << trial << " layer " << l;
        ++compared;
      }
      p.end_batch(n);
    }
    EXPECT_GE(compared, 12) << "parts " << parts;
  }
}

// With mem_consensus every retrieving layer takes the same blocks: those with the highest sum of
// the layers' scores, a layer the forward pass has not reached yet scoring by the keys of the
// tokens before the chunk.
TEST(InfLLMPolicy, WithConsensusEveryLayerTakesTheBlocksOfTheSummedScores) {
  const Shape shape;
  const int n_init = 2, block = 4, top_k = 2, key_window = 5;
  MemoryConfig c = config(n_init, 10, block, 2, top_k, 3);
  c.mem_score = "keys";
  c.mem_key_window = key_window;
  c.mem_consensus = true;
  InfLLMPolicy p(c);
  Driver d(p, shape, 3);
  std::mt19937 rng(9);
  while (p.n_seen() < 120) d.feed(1 + static_cast<int>(rng() % 3), nullptr);
  const int kv = shape.kv_dim();
  int compared = 0;
  for (int trial = 0; trial < 12; ++trial) {
    const int n = 1 + trial % 3;
    d.begin(n);
    const int64_t nb = p.n_blocks();
    std::vector<double> total(nb, 0.0);
    for (int l = 0; l < kLayers; ++l) {
      const int64_t end = l == 0 ? p.n_seen() + n : p.n_seen();  // layer 0 is where the choice is made
      std::vector<double> centre;
      const auto mean = block_mean_keys(p, l, kv, block, nb, &centre);
      const std::vector<double> recent = recent_mean_key(l, kv, end, std::max(key_window, n));
      for (int64_t b = 0; b < nb; ++b) total[b] += centred_cosines(shape, recent, centre, mean[b]);
    }
    std::vector<float> q(n * shape.q_dim(), 0.25f);
    for (int l = 0; l < kLayers; ++l) p.before_attention(l, q.data(), n, d.store);
    EXPECT_EQ(p.retrieved(0), p.retrieved(1));
    std::vector<std::pair<double, int64_t>> score;
    for (int64_t b = 0; b < nb; ++b) score.push_back({total[b], b});
    std::sort(score.begin(), score.end(), std::greater<>());
    p.end_batch(n);
    if (score[top_k - 1].first - score[top_k].first < 1e-4) continue;
    std::vector<int64_t> want;
    for (int j = 0; j < top_k; ++j) want.push_back(score[j].second);
    std::sort(want.begin(), want.end());
    EXPECT_EQ(p.retrieved(0), want) << "trial " << trial;
    ++compared;
  }
  EXPECT_GE(compared, 8);
  c.mem_score = "query";
  EXPECT_THROW(InfLLMPolicy{c}, Error);  // queries exist for one layer at a time
}

// With mem_key_halflife the recent mean key weighs token t by 2^(-age / half-life), age 0 for the
// chunk's tokens; with mem_key_whiten every dimension of the centred keys is divided by its
// standard deviation over the blocks' mean keys before the cosines. Checked against the same
// scores computed independently from the keys, and each setting must change some choices.
TEST(InfLLMPolicy, KeyHalfLifeAndWhiteningScoreAsTheReference) {
  const Shape shape;
  const int n_init = 2, block = 4, top_k = 2, key_window = 8;
  const int kv = shape.kv_dim();
  struct Variant {
    double halflife;
    bool whiten;
  };
  // The choices of each variant, trial by trial and layer by layer.
  std::vector<std::vector<std::vector<int64_t>>> choices;
  for (const Variant v : {Variant{0, false}, Variant{2, false}, Variant{0, true}, Variant{2, true}}) {
    MemoryConfig c = config(n_init, 16, block, 2, top_k, 3);
    c.mem_score = "keys";
    c.mem_key_window = key_window;
    c.mem_key_halflife = v.halflife;
    c.mem_key_whiten = v.whiten;
    InfLLMPolicy p(c);
    Driver d(p, shape, 3);
    std::mt19937 rng(4);
    while (p.n_seen() < 120) d.feed(1 + static_cast<int>(rng() % 3), nullptr);
    std::vector<std::vector<int64_t>> chosen;
    int compared = 0;
    for (int trial = 0; trial < 24; ++trial) {
      const int n = 1 + trial % 3;
      d.begin(n);
      const int64_t t0 = p.n_seen(), end = t0 + n, nb = p.n_blocks();
      std::vector<float> q(n * shape.q_dim(), 0.25f);
      for (int l = 0; l < kLayers; ++l) {
        p.before_attention(l, q.data(), n, d.store);
        chosen.push_back(p.retrieved(l));
        std::vector<double> centre;
        const auto mean = block_mean_keys(p, l, kv, block, nb, &centre);
        // The weighted recent mean: the chunk's tokens age 0, those before it 1, 2, ...
        std::vector<double> recent(kv, 0.0);
        std::vector<float> k(kv);
        double total = 0;
        for (int64_t t = end - std::max(key_window, n); t < end; ++t) {
          const double w = v.halflife > 0 ? std::pow(0.5, static_cast<double>(std::max<int64_t>(0, t0 - t)) / v.halflife) : 1.0;
          key_of(t, l, kv, k.data());
          for (int e = 0; e < kv; ++e) recent[e] += w * k[e];
          total += w;
        }
        for (double& x : recent) x /= total;
        // Whitening: the dimensions scaled by 1/standard deviation of the blocks' mean keys;
        // scaling the centred vectors is the same as scaling (x - centre) for x and the centre.
        std::vector<double> scale(kv, 1.0);
        if (v.whiten)
          for (int e = 0; e < kv; ++e) {
            double var = 0;
            for (int64_t b = 0; b < nb; ++b) var += (mean[b][e] - centre[e]) * (mean[b][e] - centre[e]) / nb;
            scale[e] = 1 / std::sqrt(var);
          }
        auto scaled = [&](std::vector<double> x) {
          for (int e = 0; e < kv; ++e) x[e] = centre[e] + (x[e] - centre[e]) * scale[e];
          return x;
        };
        std::vector<std::pair<double, int64_t>> score;
        for (int64_t b = 0; b < nb; ++b)
          score.push_back({centred_cosines(shape, scaled(recent), centre, scaled(mean[b])), b});
        std::sort(score.begin(), score.end(), std::greater<>());
        if (score[top_k - 1].first - score[top_k].first < 1e-4) continue;  // float rounding may swap near-ties
        std::vector<int64_t> want;
        for (int j = 0; j < top_k; ++j) want.push_back(score[j].second);
        std::sort(want.begin(), want.end());
        EXPECT_EQ(p.retrieved(l), want) << "half-life " << v.halflife << " whiten " << v.whiten << " trial " << trial
                                        << " layer " << l;
        ++compared;
      }
      p.end_batch(n);
    }
    EXPECT_GE(compared, 30) << "half-life " << v.halflife << " whiten " << v.whiten;
    choices.push_back(chosen);
  }
  // Each setting changes what is retrieved (the test would pass on a policy ignoring it otherwise).
  EXPECT_NE(choices[1], choices[0]);
  EXPECT_NE(choices[2], choices[0]);
  EXPECT_NE(choices[3], choices[1]);
  EXPECT_NE(choices[3], choices[2]);
}

// With mem_consensus_from a layer below mem_skip_layers adds its scores to the consensus
// without retrieving anything itself.
TEST(InfLLMPolicy, ConsensusFromALayerThatDoesNotRetrieve) {
  const Shape shape;
  const int n_init = 2, block = 4, top_k = 2, key_window = 5;
  const int kv = shape.kv_dim();
  std::vector<std::vector<int64_t>> with, without;
  for (const int from : {0, -1}) {
    MemoryConfig c = config(n_init, 10, block, 2, top_k, 3);
    c.mem_score = "keys";
    c.mem_key_window = key_window;
    c.mem_consensus = true;
    c.mem_skip_layers = 1;
    c.mem_consensus_from = from;
    InfLLMPolicy p(c);
    Driver d(p, shape, 3);
    std::mt19937 rng(9);
    while (p.n_seen() < 120) d.feed(1 + static_cast<int>(rng() % 3), nullptr);
    int compared = 0;
    for (int trial = 0; trial < 24; ++trial) {
      const int n = 1 + trial % 3;
      d.begin(n);
      const int64_t nb = p.n_blocks(), end = p.n_seen() + n;  // both layers' chunk keys are stored
      std::vector<double> total(nb, 0.0);
      for (int l = from >= 0 ? from : 1; l < kLayers; ++l) {
        std::vector<double> centre;
        const auto mean = block_mean_keys(p, l, kv, block, nb, &centre);
        const std::vector<double> recent = recent_mean_key(l, kv, end, std::max(key_window, n));
        for (int64_t b = 0; b < nb; ++b) total[b] += centred_cosines(shape, recent, centre, mean[b]);
      }
      std::vector<float> q(n * shape.q_dim(), 0.25f);
      for (int l = 0; l < kLayers; ++l) p.before_attention(l, q.data(), n, d.store);
      EXPECT_TRUE(p.retrieved(0).empty());
      (from >= 0 ? with : without).push_back(p.retrieved(1));
      std::vector<std::pair<double, int64_t>> score;
      for (int64_t b = 0; b < nb; ++b) score.push_back({total[b], b});
      std::sort(score.begin(), score.end(), std::greater<>());
      p.end_batch(n);
      if (score[top_k - 1].first - score[top_k].first < 1e-4) continue;
      std::vector<int64_t> want;
      for (int j = 0; j < top_k; ++j) want.push_back(score[j].second);
      std::sort(want.begin(), want.end());
      EXPECT_EQ(p.retrieved(1), want) << "from " << from << " trial " << trial;
      ++compared;
    }
    EXPECT_GE(compared, 16);
  }
  EXPECT_NE(with, without);  // layer 0's scores changed some choices
  MemoryConfig c = config(n_init, 10, block, 2, top_k, 3);
  c.mem_score = "keys";
  c.mem_consensus_from = 0;
  EXPECT_THROW(InfLLMPolicy{c}, Error);  // without --mem-consensus
}

// Deep into a stream the index is searched in two levels: groups of blocks by their mean key,
// then the blocks of the best groups and of the group being filled; checked against the same
// search done independently from the keys.
TEST(InfLLMPolicy, SearchesTheBestGroupsThenTheirBlocks) {
  const Shape shape;
  const int n_init = 2, block = 4, top_k = 2, key_window = 5, group = 3, beam = 2;
  MemoryConfig c = config(n_init, 10, block, 2, top_k, 3);
  c.mem_score = "keys";
  c.mem_key_window = key_window;
  c.mem_index_group = group;
  c.mem_index_beam = beam;
  InfLLMPolicy p(c);
  Driver d(p, shape, 3);
  std::mt19937 rng(5);
  while (p.n_seen() < 200) d.feed(1 + static_cast<int>(rng() % 3), nullptr);
  const int kv = shape.kv_dim();
  int compared = 0;
  for (int trial = 0; trial < 30; ++trial) {
    const int n = 1 + trial % 3;
    d.begin(n);
    const int64_t end = p.n_seen() + n;
    std::vector<float> q(n * shape.q_dim(), 0.25f);
    for (int l = 0; l < kLayers; ++l) {
      p.before_attention(l, q.data(), n, d.store);
      const int64_t nb = p.n_blocks(), groups = nb / group;
      ASSERT_GT(groups, beam);
      std::vector<double> centre;
      const auto mean = block_mean_keys(p, l, kv, block, nb, &centre);
      const std::vector<double> recent = recent_mean_key(l, kv, end, std::max(key_window, n));
      auto score = [&](const std::vector<double>& m) { return centred_cosines(shape, recent, centre, m); };
      std::vector<std::pair<double, int64_t>> by_group;
      for (int64_t g = 0; g < groups; ++g) {
        std::vector<double> gm(kv, 0.0);
        for (int64_t b = g * group; b < (g + 1) * group; ++b)
          for (int e = 0; e < kv; ++e) gm[e] += mean[b][e] / group;
        by_group.push_back({score(gm), g});
      }
      std::sort(by_group.begin(), by_group.end(), std::greater<>());
      if (by_group[beam - 1].first - by_group[beam].first < 1e-4) continue;  // a near-tie of groups
      std::vector<int64_t> candidates;
      for (int j = 0; j < beam; ++j)
        for (int64_t b = by_group[j].second * group; b < (by_group[j].second + 1) * group; ++b) candidates.push_back(b);
      for (int64_t b = groups * group; b < nb; ++b) candidates.push_back(b);  // the open group
      EXPECT_EQ(p.scored_last(l), static_cast<int64_t>(candidates.size()));
      std::vector<std::pair<double, int64_t>> by_block;
      for (int64_t b : candidates) by_block.push_back({score(mean[b]), b});
      std::sort(by_block.begin(), by_block.end(), std::greater<>());
      if (by_block[top_k - 1].first - by_block[top_k].first < 1e-4) continue;
      std::vector<int64_t> want;
      for (int j = 0; j < top_k; ++j) want.push_back(by_block[j].second);
      std::sort(want.begin(), want.end());
      EXPECT_EQ(p.retrieved(l), want) << "trial " << trial << " layer " << l;
      ++compared;
    }
    p.end_batch(n);
  }
  EXPECT_GE(compared, 30);
  // Far fewer blocks scored than held: the cost of a search does not grow with the stream.
  EXPECT_LE(p.scored_last(1), (beam + 1) * group);
  EXPECT_GT(p.n_blocks(), 4 * (beam + 1) * group);
}

TEST(InfLLMPolicy, ScoresAgainOnlyInBatchesHoldingAMultipleOfTheStride) {
  const Shape shape;
  MemoryConfig c = config(2, 10, 4, 2, 2, 3);
  c.mem_retrieve_every = 5;
  MemoryConfig every = c;
  every.mem_retrieve_every = 1;
  InfLLMPolicy p(c), ref(every);
  Driver d(p, shape, 3), dr(ref, shape, 3);
  std::mt19937 rng(6);
  std::vector<float> q(3 * shape.q_dim());
  std::vector<std::vector<int64_t>> last(kLayers);
  int rescored = 0, kept = 0;
  while (p.n_seen() < 300) {
    const int n = 1 + static_cast<int>(rng() % 3);
    const int64_t t0 = p.n_seen();
    for (size_t e = 0; e < q.size(); ++e) q[e] = std::sin(0.21f * static_cast<float>(t0) + 1.1f * e);
    d.feed(n, q.data());
    dr.feed(n, q.data());
    bool holds_multiple = false;
    for (int64_t t = t0; t < t0 + n; ++t) holds_multiple |= t % 5 == 0;
    for (int l = 0; l < kLayers; ++l) {
      if (p.n_blocks() <= 2) {  // all blocks fit: nothing to score
        last[l] = p.retrieved(l);
        continue;
      }
      if (holds_multiple || last[l].empty()) {
        EXPECT_EQ(p.retrieved(l), ref.retrieved(l)) << "at " << t0;  // scored as the stride-1 policy
        ++rescored;
      } else {
        EXPECT_EQ(p.retrieved(l), last[l]) << "at " << t0;  // the last choice stands
        ++kept;
      }
      last[l] = p.retrieved(l);
    }
  }
  EXPECT_GT(rescored, 20);
  EXPECT_GT(kept, 20);
}

TEST(InfLLMPolicy, RejectsBadSettings) {
  MemoryConfig c = config(4, 64, 16, 4, 4, 8);
  c.block_reps = 17;
  EXPECT_THROW(make_policy(c), Error);
  c.block_reps = 4;
  c.window = 4;
  EXPECT_THROW(make_policy(c), Error);
  c.window = 64;
  c.block_size = 0;
  EXPECT_THROW(make_policy(c), Error);
  c.block_size = 16;
  c.top_k = -1;
  EXPECT_THROW(make_policy(c), Error);
  c.top_k = 4;
  EXPECT_EQ(make_policy(c)->describe(), "infllm 4+60 top 4x16 r4 from layer 0 query");
  c.mem_score = "keys";
  c.mem_skip_layers = 1;
  EXPECT_EQ(make_policy(c)->describe(), "infllm 4+60 top 4x16 r4 from layer 1 keys 32");
  c.mem_score = "both";
  EXPECT_THROW(make_policy(c), Error);
  c.mem_score = "keys";
  c.mem_skip_layers = -1;
  EXPECT_THROW(make_policy(c), Error);
  c.mem_skip_layers = 1;
  c.mem_key_window = 0;
  EXPECT_THROW(make_policy(c), Error);
  c.mem_key_window = 32;
  c.mem_key_halflife = -1;
  EXPECT_THROW(make_policy(c), Error);
  c.mem_key_halflife = 16;
  c.mem_key_whiten = true;
  c.mem_consensus = true;
  c.mem_consensus_from = 0;
  EXPECT_EQ(make_policy(c)->describe(), "infllm 4+60 top 4x16 r4 from layer 1 keys 32 half-life 16 whiten consensus from 0");
  c.mem_score = "query";
  c.mem_consensus = false;
  c.mem_consensus_from = -1;
  EXPECT_THROW(make_policy(c), Error);  // half-life and whitening are for keys scoring
  c.mem_score = "keys";
  c.mem_key_halflife = 0;
  c.mem_key_whiten = false;
  c.mem_retrieve_every = 0;
  EXPECT_THROW(make_policy(c), Error);
  c.mem_retrieve_every = 8;
  EXPECT_EQ(make_policy(c)->describe(), "infllm 4+60 top 4x16 r4 from layer 1 keys 32 every 8");
  c.mem_retrieve_every = 1;
  c.mem_key_parts = 3;  // does not divide the block of 16
  EXPECT_THROW(make_policy(c), Error);
  c.mem_key_parts = 4;
  EXPECT_EQ(make_policy(c)->describe(), "infllm 4+60 top 4x16 r4 from layer 1 keys 32 parts 4");
  c.mem_key_parts = 1;
  c.mem_index_group = 0;
  EXPECT_THROW(make_policy(c), Error);
  c.mem_index_group = 64;
  c.mem_index_beam = 0;
  EXPECT_THROW(make_policy(c), Error);
  c.mem_index_beam = 4;
  // Capacity: sinks, top-k retrieved blocks, the window with a block's and a batch's slack.
  EXPECT_EQ(make_policy(c)->capacity(), 4 + 4 * 16 + 60 + 16 + 8);
}

// --- The block store ---

BlockGeometry geometry() {
  BlockGeometry g;
  g.n_layers = 3;
  g.kv_dim = 8;
  g.block_size = 4;
  g.elem_size = 2;
  return g;
}

std::vector<uint8_t> block_bytes(const BlockGeometry& g, int64_t b) {
  std::vector<uint8_t> d(g.block_bytes());
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(b * 131 + i * 7);
  return d;
}

TEST(BlockStore, RamBudgetForgetsOrSpillsTheOldest) {
  const BlockGeometry g = geometry();
  {
    BlockStore s(g, 3 * g.block_bytes(), "", 4);
    for (int64_t b = 0; b < 10; ++b) s.append(block_bytes(g, b).data());
    EXPECT_EQ(s.size(), 10);
    EXPECT_EQ(s.first_alive(), 7);
    EXPECT_EQ(s.in_ram(), 3);
    EXPECT_LE(s.ram_bytes(), 3 * g.block_bytes());
    EXPECT_THROW(s.layer(6, 0), Error);
    EXPECT_EQ(0, std::memcmp(s.layer(8, 2), block_bytes(g, 8).data() + 2 * g.layer_bytes(), g.layer_bytes()));
  }
  const auto dir = endless::testing::scratch_dir("blockstore");
  std::string path;
  {
    BlockStore s(g, 2 * g.block_bytes(), dir.string(), 2);
    for (int64_t b = 0; b < 20; ++b) s.append(block_bytes(g, b).data());
    EXPECT_EQ(s.first_alive(), 0);
    EXPECT_EQ(s.on_disk(), 18);
    path = s.path();
    EXPECT_TRUE(std::filesystem::exists(path));
    for (int round = 0; round < 2; ++round)
      for (int64_t b = 0; b < 20; ++b)
        for (int l = 0; l < g.n_layers; ++l)
          ASSERT_EQ(0, std::memcmp(s.layer(b, l), block_bytes(g, b).data() + l * g.layer_bytes(), g.layer_bytes()));
    // The hot cache holds at most two block-layers besides the RAM blocks.
    EXPECT_LE(s.ram_bytes(), 2 * g.block_bytes() + 2 * (g.layer_bytes() + 8));
    const int64_t reads = s.disk_reads();
    s.layer(3, 1);
    s.layer(3, 1);  // hot now
    EXPECT_EQ(s.disk_reads(), reads + 1);
  }
  EXPECT_FALSE(std::filesystem::exists(path));  // a sequence's file goes with it
}

TEST(BlockStore, CorruptTruncatedOrForeignFilesAreClearErrors) {
  const BlockGeometry g = geometry();
  const auto dir = endless::testing::scratch_dir("blockstore-bad");
  std::string path;
  {
    BlockStore s(g, 0, dir.string(), 1);
    for (int64_t b = 0; b < 6; ++b) s.append(block_bytes(g, b).data());
    s.keep_file();
    path = s.path();
  }
  {
    BlockStore r = BlockStore::reopen(g, 0, path, 6, 1);
    EXPECT_EQ(r.size(), 6);
    EXPECT_EQ(0, std::memcmp(r.layer(5, 2), block_bytes(g, 5).data() + 2 * g.layer_bytes(), g.layer_bytes()));
    r.append(block_bytes(g, 6).data());  // appends after what it found
    EXPECT_EQ(0, std::memcmp(r.layer(6, 0), block_bytes(g, 6).data(), g.layer_bytes()));
  }
  std::vector<char> bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::vector<char>& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  auto expect_error = [&](const std::function<void()>& f, const std::string& words) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one about " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  // A flipped byte inside block 2, layer 1.
  auto flipped = bytes;
  flipped[64 + 2 * 3 * (g.layer_bytes() + 8) + (g.layer_bytes() + 8) + 5] ^= 0x10;
  write(flipped);
  {
    BlockStore r = BlockStore::reopen(g, 0, path, 6, 1);
    expect_error([&] { r.layer(2, 1); }, "block 2 layer 1 fails its checksum");
    EXPECT_NO_THROW(r.layer(2, 0));
  }
  write(std::vector<char>(bytes.begin(), bytes.end() - 100));
  expect_error([&] { BlockStore::reopen(g, 0, path, 7, 1); }, "truncated");
  write(std::vector<char>(bytes.begin(), bytes.begin() + 20));
  expect_error([&] { BlockStore::reopen(g, 0, path, 1, 1); }, "truncated");
  auto version = bytes;
  version[8] = 9;
  write(version);
  expect_error([&] { BlockStore::reopen(g, 0, path, 1, 1); }, "corrupt");  // the header's checksum
  write(bytes);
  BlockGeometry other = g;
  other.block_size = 8;
  expect_error([&] { BlockStore::reopen(other, 0, path, 1, 1); }, "another model or block size");
  write({'n', 'o', 'p', 'e', 'n', 'o', 'p', 'e', 0, 0});
  expect_error([&] { BlockStore::reopen(g, 0, path, 1, 1); }, "truncated");
  expect_error([&] { BlockStore::reopen(g, 0, (dir / "missing.mem").string(), 1, 1); }, "cannot open");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace endless
