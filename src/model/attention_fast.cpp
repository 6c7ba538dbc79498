// The fast attention path: the same arithmetic as Engine::attention_reference (forward.cpp), in
// the same order, so the results are identical; only the memory layout differs:
//  - the cache keeps keys in tiles of sixteen slots, dimension-major (KVStore), so a query's
//    scores against a run of slots are computed dimension by dimension with the slot index
//    innermost, straight from the cache: many keys' chains of multiply-adds side by side, no
//    horizontal sums, no transposition (kernels::attention_scores);
//  - the weighted sum of values runs with the head dimension innermost, the heads of a KV group
//    together, on the cache's values in place (kernels::attention_values, _f16).
// Work is handed out in units of one token and a group of its KV heads: heads are independent,
// so how they are split between threads does not change a number.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "model/forward.h"
#include "util/fp16.h"

// Contraction into FMA would make the instruction-set clones differ from each other and from the
// reference; every multiply-add here is written out and must stay as written.
#pragma GCC optimize("fp-contract=off")

namespace endless {

namespace {

struct TokenScratch {
  std::vector<Span> spans;
  std::vector<float> qr, scores;
  std::vector<uint16_t> half;
  // The query rotation's cos and sin for each span, kept while the span's position stays: a
  // token's KV heads run as separate units, mostly one after another on the same thread.
  // Scratch is per thread, not per engine: the angles are those of the rope settings held here.
  std::vector<double> angles_pos;
  std::vector<float> angles;  // per span: n_rot / 2 cos, then n_rot / 2 sin
  int n_rot = -1;
  double freq_base = 0, freq_scale = 0;
};

// One token's attention over its spans, for KV heads [g0, g1) and their query heads. Compiled for
// several instruction sets; with floating-point contraction off, every version computes exactly
// the same numbers.
__attribute__((target_clones("avx512f", "avx2", "default")))
void attend_token(const ModelConfig& c, const Rope& rope, TokenScratch& t, const float* q, const KVStore& store,
                  int layer, float* o, MemoryPolicy* observer, int token, int g0, int g1) {
  const int group = c.n_heads / c.n_kv_heads;
  const int hd = c.head_dim;
  const int kv_dim = c.kv_dim();
  const bool f16 = store.type() == TensorType::F16;
  const int h0 = g0 * group, h1 = g1 * group;
  const int64_t q0 = int64_t{h0} * hd, q_len = int64_t{h1 - h0} * hd;  // this range's part of q and o
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t n_keys = 0;
  for (const Span& s : t.spans) n_keys += s.end - s.begin;
  t.qr.resize(c.q_dim());
  t.scores.resize(static_cast<size_t>(n_keys) * c.n_heads);  // every entry is written below

  const RopeConfig& rc = rope.config();
  const int half_rot = rc.n_rot / 2;
  if (t.n_rot != rc.n_rot || t.freq_base != rc.freq_base || t.freq_scale != rc.freq_scale) {
    t.n_rot = rc.n_rot;
    t.freq_base = rc.freq_base;
    t.freq_scale = rc.freq_scale;
    t.angles_pos.clear();
  }
  if (t.angles_pos.size() < t.spans.size()) {
    t.angles_pos.resize(t.spans.size(), NAN);  // NaN equals no position: computed on first use
    t.angles.resize(t.spans.size() * 2 * half_rot);
  }
  int64_t j0 = 0;  // where this span's scores start in each head's row
  for (size_t k = 0; k < t.spans.size(); ++k) {
    const Span& s = t.spans[k];
    const int64_t len = s.end - s.begin;
    float* qr = t.qr.data() + q0;
    std::memcpy(qr, q + q0, q_len * sizeof(float));
    float* cs = t.angles.data() + k * 2 * half_rot;
    if (!(t.angles_pos[k] == s.query_pos)) {
      rope.angles(s.query_pos, cs, cs + half_rot);
      t.angles_pos[k] = s.query_pos;
    }
    rope.rotate(qr, h1 - h0, cs, cs + half_rot);
    if (f16) {
      t.half.resize(q_len);
      kernels::fp32_to_fp16_row(qr, t.half.data(), q_len);
      kernels::fp16_to_fp32_row(t.half.data(), qr, q_len);
    }
    for (int g = g0; g < g1; ++g)
      kernels::attention_scores(t.qr.data() + g * group * hd, group, hd, store.key_tiles(layer, g), s.begin,
                                len, scale, t.scores.data() + g * group * n_keys + j0, n_keys);
    j0 += len;
  }
  for (int h = h0; h < h1; ++h) {
    float* sh = t.scores.data() + h * n_keys;
    const float mx = kernels::max_row(sh, n_keys);
    const double sum = kernels::softmax_exp_row(sh, sh, n_keys, mx);
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t k = 0; k < n_keys; ++k) sh[k] *= inv;
    if (observer != nullptr) observer->observe_attention(layer, token, h, sh, n_keys);
    if (f16) {  // vectorized round trip through half precision
      t.half.resize(n_keys);
      kernels::fp32_to_fp16_row(sh, t.half.data(), n_keys);
      kernels::fp16_to_fp32_row(t.half.data(), sh, n_keys);
    }
  }
  std::fill(o + q0, o + q0 + q_len, 0.0f);
  j0 = 0;
  for (const Span& s : t.spans) {
    const int64_t len = s.end - s.begin;
    for (int g = g0; g < g1; ++g) {
      const float* p = t.scores.data() + g * group * n_keys + j0;
      const uint8_t* v = store.value(layer, s.begin);
      if (f16)
        kernels::attention_values_f16(p, n_keys, group, len, reinterpret_cast<const uint16_t*>(v) + g * hd, kv_dim,
                                      hd, o + g * group * hd, true);
      else
        kernels::attention_values(p, n_keys, group, len, reinterpret_cast<const float*>(v) + g * hd, kv_dim, hd,
                                  o + g * group * hd);
    }
    j0 += len;
  }
}

// Spans that continue one another in the cache, with the query at the same position, as one: the
// same keys in the same order, so the same numbers, but one pass over the tiles, not two that
// both compute the tile where they meet. (A sink cache's sinks and window, until the window
// first slides: a pass over a short span costs about as much as one over 64 keys.)
void merge_adjacent(std::vector<Span>& spans) {
  size_t n = 0;
  for (size_t k = 0; k < spans.size(); ++k) {
    if (n > 0 && spans[n - 1].end == spans[k].begin && spans[n - 1].query_pos == spans[k].query_pos)
      spans[n - 1].end = spans[k].end;
    else
      spans[n++] = spans[k];
  }
  spans.resize(n);
}

// Units [begin, end) of one part's work: unit u is token u / split and its KV heads' group
// u % split (of `split` equal groups), so a part's units run in token order.
void attend_units(const ModelConfig& c, const Rope& rope, int layer, const BatchPart& part, const float* q,
                  float* out, int split, int64_t begin, int64_t end) {
  const MemoryPolicy& policy = *part.seq->policy;
  // The policy asked for the softmax weights (attention mass): reported as the reference does.
  MemoryPolicy* observer = policy.wants_attention() ? part.seq->policy.get() : nullptr;
  // Kept per thread: a fresh one per call would allocate (and zero) every head's scores each
  // time, at long contexts from newly mapped pages.
  thread_local TokenScratch scratch;
  int64_t spans_of = -1;  // the token whose spans scratch holds
  for (int64_t u = begin; u < end; ++u) {
    const int64_t i = u / split;
    const int g = static_cast<int>(u % split);
    if (i != spans_of) {
      policy.spans(layer, static_cast<int>(i), scratch.spans);
      merge_adjacent(scratch.spans);
      spans_of = i;
    }
    attend_token(c, rope, scratch, q + i * c.q_dim(), part.seq->store, layer, out + i * c.q_dim(), observer,
                 static_cast<int>(i), c.n_kv_heads * g / split, c.n_kv_heads * (g + 1) / split);
  }
}

// KV-head groups per token: a policy that observes the weights gets them one token at a time per
// thread, as its contract says, so its tokens stay whole.
int head_split(const ModelConfig& c, const BatchPart& part, bool split) {
  return split && !part.seq->policy->wants_attention() ? c.n_kv_heads : 1;
}

}  // namespace

void Engine::attention_fast(int layer, const BatchPart& part, const float* q, float* out) {
  // In chunks, each thread its own part first, then what is left of the others': a causal
  // batch's later tokens see more keys, so equal halves of the tokens are not equal work. With
  // fewer tokens than threads (one sequence decoding), each token's KV heads are split between
  // the threads, which would otherwise wait while one thread reads the whole cache.
  const int split = head_split(config(), part, static_cast<int>(part.tokens.size()) < pool_.size());
  const int64_t n = static_cast<int64_t>(part.tokens.size()) * split;
  pool_.parallel_for_balanced(n, 1, std::max<int64_t>(1, n / (8 * pool_.size())), [&](int64_t begin, int64_t end) {
    attend_units(config(), rope_, layer, part, q, out, split, begin, end);
  });
}

void Engine::attention_fast_parts(int layer, std::span<const BatchPart> parts, const float* q, float* out) {
  const ModelConfig& c = config();
  // Every part's units in one list, handed out one at a time: parts differ in length (a session
  // deep into its stream costs many short ones), and a thread may be delayed. A part's KV heads
  // are split too, so one long part does not leave the other threads waiting at the end.
  part_rows_.resize(parts.size());
  part_units_.resize(parts.size() + 1);
  int64_t row = 0;
  part_units_[0] = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    part_rows_[p] = row;
    row += static_cast<int64_t>(parts[p].tokens.size());
    part_units_[p + 1] =
        part_units_[p] + static_cast<int64_t>(parts[p].tokens.size()) * head_split(c, parts[p], true);
  }
  std::atomic<int64_t> next{0};
  pool_.run([&](int) {
    size_t p = 0;
    for (int64_t u; (u = next.fetch_add(1, std::memory_order_relaxed)) < part_units_.back();) {
      while (part_units_[p + 1] <= u) ++p;  // units are taken in increasing order
      const int64_t r = part_rows_[p];
      const int split = head_split(c, parts[p], true);
      attend_units(c, rope_, layer, parts[p], q + r * c.q_dim(), out + r * c.q_dim(), split, u - part_units_[p],
                   u - part_units_[p] + 1);
    }
  });
}

}  // namespace endless
