// The fast attention path: the same arithmetic as Engine::attention_reference (forward.cpp), in
// the same order, so the results are identical; only the memory layout differs:
//  - the keys a batch can see are converted to float once per layer and batch, not once per
//    token and head, and transposed (kernels::transpose_to_f32, sixteen keys at a time in
//    registers) to [kv head][dim][slot], so a query's scores against a run of slots are
//    computed dimension by dimension with the slot index innermost: many keys' chains of fused
//    multiply-adds side by side, no horizontal sums (kernels::attention_scores);
//  - the weighted sum of values runs with the head dimension innermost, the heads of a KV group
//    together, on the cache's values in place (kernels::attention_values, _f16).
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
};

// One token's attention over its spans, for KV heads [g0, g1) and their query heads, given the
// batch's transposed keys kt ([kv_dim][kt_stride], slot lo + j at column j) and the cache's values
// from slot lo on (v_lo, rows of kv_dim). Heads are independent, so a token's heads may be split
// between threads with the same results. Compiled for several instruction sets; with
// floating-point contraction off, every version computes exactly the same numbers.
__attribute__((target_clones("avx512f", "avx2", "default")))
void attend_token(const ModelConfig& c, const Rope& rope, TokenScratch& t, const float* q,
                  const float* kt_all, const uint8_t* v_lo, int64_t kt_stride, int64_t lo, bool f16,
                  float* o, MemoryPolicy* observer, int layer, int token, int g0, int g1) {
  const int group = c.n_heads / c.n_kv_heads;
  const int hd = c.head_dim;
  const int kv_dim = c.kv_dim();
  const int h0 = g0 * group, h1 = g1 * group;
  const int64_t q0 = int64_t{h0} * hd, q_len = int64_t{h1 - h0} * hd;  // this range's part of q and o
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  int64_t n_keys = 0;
  for (const Span& s : t.spans) n_keys += s.end - s.begin;
  t.qr.resize(c.q_dim());
  t.scores.resize(static_cast<size_t>(n_keys) * c.n_heads);  // every entry is written below

  int64_t j0 = 0;  // where this span's scores start in each head's row
  for (const Span& s : t.spans) {
    const int64_t len = s.end - s.begin;
    float* qr = t.qr.data() + q0;
    std::memcpy(qr, q + q0, q_len * sizeof(float));
    rope.apply(qr, h1 - h0, s.query_pos);
    if (f16) {
      t.half.resize(q_len);
      kernels::fp32_to_fp16_row(qr, t.half.data(), q_len);
      kernels::fp16_to_fp32_row(t.half.data(), qr, q_len);
    }
    for (int g = g0; g < g1; ++g)
      kernels::attention_scores(t.qr.data() + g * group * hd, group, hd,
                                kt_all + static_cast<size_t>(g * hd) * kt_stride + (s.begin - lo), kt_stride, len, scale,
                                t.scores.data() + g * group * n_keys + j0, n_keys, f16);
    j0 += len;
  }
  for (int h = h0; h < h1; ++h) {
    float* sh = t.scores.data() + h * n_keys;
    float mx = -INFINITY;
    for (int64_t k = 0; k < n_keys; ++k) mx = std::max(mx, sh[k]);
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
      const int64_t v_off = (s.begin - lo) * kv_dim + g * hd;
      if (f16)
        kernels::attention_values_f16(p, n_keys, group, len, reinterpret_cast<const uint16_t*>(v_lo) + v_off, kv_dim,
                                      hd, o + g * group * hd, true);
      else
        kernels::attention_values(p, n_keys, group, len, reinterpret_cast<const float*>(v_lo) + v_off, kv_dim, hd,
                                  o + g * group * hd);
    }
    j0 += len;
  }
}

// One part's attention, each token's heads in `split` groups of KV heads (1: whole tokens).
// `for_range(n, fn)` runs fn(begin, end) over [0, n): across the pool when
// the part has the machine to itself, on the calling thread when parts run side by side. Either
// way every token's numbers are the same (attend_token does not depend on who runs it).
template <typename ForRange>
void attend_part(const ModelConfig& c, const Rope& rope, int layer, const BatchPart& part, const float* q,
                 float* out, std::vector<float>& kt, int split, ForRange&& for_range) {
  const int n = static_cast<int>(part.tokens.size());
  const int kv_dim = c.kv_dim();
  const KVStore& store = part.seq->store;
  const bool f16 = store.type() == TensorType::F16;
  const MemoryPolicy& policy = *part.seq->policy;
  // The policy asked for the softmax weights (attention mass): reported as the reference does.
  MemoryPolicy* observer = policy.wants_attention() ? part.seq->policy.get() : nullptr;

  // The slots any token of this batch attends to.
  std::vector<Span> spans;
  int64_t lo = INT64_MAX, hi = 0;
  for (int i = 0; i < n; ++i) {
    policy.spans(layer, i, spans);
    for (const Span& s : spans) {
      if (s.begin >= s.end) continue;
      lo = std::min(lo, s.begin);
      hi = std::max(hi, s.end);
    }
  }
  if (hi <= lo) lo = hi = 0;
  const int64_t m = hi - lo;
  // A score reads one run of each of the head's rows of kt, so rows a power of two apart would
  // all fall into the same few sets of the L1 cache (rows of 512 slots did, and every load went
  // to L2); one extra cache line per row spreads them.
  const int64_t kt_stride = (m + 15) / 16 * 16 + 16;

  // Keys transposed, once for the whole batch, sixteen slots at a time.
  if (kt.size() < static_cast<size_t>(kt_stride * kv_dim)) kt.resize(kt_stride * kv_dim);
  for_range((m + 15) / 16, [&](int64_t begin, int64_t end) {
    const int64_t j0 = 16 * begin, j1 = std::min(m, 16 * end);
    kernels::transpose_to_f32(store.key(layer, lo + j0), f16, j1 - j0, kv_dim, kt.data() + j0, kt_stride);
  });

  // Units of work: (token, group of KV heads), token-major.
  for_range(int64_t{n} * split, [&](int64_t begin, int64_t end) {
    // Kept per thread: a fresh one per chunk allocated (and zeroed) every head's scores each time,
    // at long contexts from newly mapped pages.
    thread_local TokenScratch scratch;
    int64_t spans_of = -1;  // the token whose spans scratch holds
    for (int64_t u = begin; u < end; ++u) {
      const int64_t i = u / split;
      const int part = static_cast<int>(u % split);
      if (i != spans_of) {
        policy.spans(layer, static_cast<int>(i), scratch.spans);
        spans_of = i;
      }
      attend_token(c, rope, scratch, q + i * c.q_dim(), kt.data(), store.value(layer, lo), kt_stride, lo, f16,
                   out + i * c.q_dim(), observer, layer, static_cast<int>(i), c.n_kv_heads * part / split,
                   c.n_kv_heads * (part + 1) / split);
    }
  });
}

}  // namespace

void Engine::attention_fast(int layer, const BatchPart& part, const float* q, float* out) {
  // In chunks, each thread its own part first, then what is left of the others': a causal
  // batch's later tokens see more keys, so equal halves of the tokens are not equal work. With
  // fewer tokens than threads (one sequence decoding), each token's KV heads are split between
  // the threads, which would otherwise wait while one thread reads the whole cache. A policy
  // that observes the weights gets them one token at a time per thread, as its contract says.
  const bool by_heads = static_cast<int>(part.tokens.size()) < pool_.size() && !part.seq->policy->wants_attention();
  const int split = by_heads ? config().n_kv_heads : 1;
  attend_part(config(), rope_, layer, part, q, out, kt_, split, [&](int64_t n, auto&& fn) {
    pool_.parallel_for_balanced(n, 1, std::max<int64_t>(1, n / (8 * pool_.size())), fn);
  });
}

void Engine::attention_fast_parts(int layer, std::span<const BatchPart> parts, const float* q, float* out) {
  const ModelConfig& c = config();
  if (part_kt_.size() < static_cast<size_t>(pool_.size())) {
    part_kt_.resize(pool_.size());
  }
  // Whole parts handed out one at a time (parts differ in length, and a thread may be delayed),
  // each thread with its own scratch; a part's tokens on that one thread.
  part_rows_.resize(parts.size());
  int64_t row = 0;  // each part's first row in q and out
  for (size_t p = 0; p < parts.size(); ++p) {
    part_rows_[p] = row;
    row += static_cast<int64_t>(parts[p].tokens.size());
  }
  std::atomic<int64_t> next{0};
  pool_.run([&](int t) {
    for (int64_t p; (p = next.fetch_add(1, std::memory_order_relaxed)) < static_cast<int64_t>(parts.size());) {
      const int64_t r = part_rows_[p];
      attend_part(c, rope_, layer, parts[p], q + r * c.q_dim(), out + r * c.q_dim(), part_kt_[t], 1,
                  [](int64_t n, auto&& fn) {
                    if (n > 0) fn(int64_t{0}, n);
                  });
    }
  });
}

}  // namespace endless
