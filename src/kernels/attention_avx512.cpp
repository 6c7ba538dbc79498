// AVX-512 attention loops (attention.h): the same arithmetic as the scalar loops, many sums side
// by side, so the numbers are identical.
//  - Scores: keys lie transposed, so sixteen keys' dimension d are one vector. Heads of 64
//    dimensions or more follow attention_dot's lanes and tree in float, two heads at a time, one
//    tile at a time, each key vector widened once for both heads. Narrower heads are double sums:
//    up to eight vectors (128 keys) of one query head advance together, per dimension a float
//    multiply, widened to two vectors of doubles, each added to its running sum; with
//    half-precision inputs the float products are exact, and two heads go together over six
//    tiles (24 double sums in registers), each key vector widened once and fused-multiply-added
//    into both heads' double sums (same numbers), the queries widened once per span.
//  - Weighted values: a head's output lives in registers (16 dimensions each, the last one masked
//    when the head dimension is not a multiple of 16) while the keys go by in order; two heads of
//    a group go together, so each value vector loaded serves both and eight chains are in flight.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/attention.h"

// GCC 12's own intrinsics headers warn about their undefined-upper-half idiom.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")

namespace endless::kernels::detail {

namespace {

// Sixteen keys: dimension d of a tile's slots, widened to float.
inline __m512 load_keys(const float* k) { return _mm512_loadu_ps(k); }
inline __m512 load_keys(const uint16_t* k) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k)));
}

// The lanes of tile t whose slots are in [begin, end).
inline __mmask16 tile_lanes(int64_t t, int64_t begin, int64_t end) {
  const int64_t first = t * kKeyTile;
  const int lo = static_cast<int>(std::max<int64_t>(begin - first, 0));
  const int hi = static_cast<int>(std::min<int64_t>(end - first, kKeyTile));
  return static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// A tile's sixteen float sums, scaled: the score of slot first + l (l in lanes) goes to
// s[first + l - begin].
inline void store_tile(__m512 sums, float scale, int64_t first, int64_t begin, __mmask16 lanes, float* s) {
  const __m512 v = _mm512_mul_ps(sums, _mm512_set1_ps(scale));
  if (first >= begin) {
    _mm512_mask_storeu_ps(s + (first - begin), lanes, v);
  } else {  // the span starts inside this tile
    alignas(64) float tmp[kKeyTile];
    _mm512_store_ps(tmp, v);
    for (int l = static_cast<int>(begin - first); l < kKeyTile; ++l)
      if (lanes >> l & 1) s[first + l - begin] = tmp[l];
  }
}

// The same from sixteen double sums (lanes 0-7 in lo, 8-15 in hi), each rounded to float first.
inline void store_scores(__m512d lo, __m512d hi, float scale, int64_t first, int64_t begin, __mmask16 lanes,
                         float* s) {
  store_tile(_mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1), scale, first,
             begin, lanes, s);
}

// Heads of 64 dimensions or more: attention_dot's lanes and tree (attention.h), sixteen keys side
// by side. Lane l of sixteen keys' dot products is one register, so each level of the tree is one
// addition of registers per pair of lanes, and each key's sum is computed as attention_dot
// computes it, in float throughout (no widening to double). One tile at a time, the tree depth
// first.

// Lane l (< 64) of H heads' dot products with a tile's sixteen keys, into out[h]: fused
// multiply-adds, one per block of 64 dimensions below whole. The first is a plain multiply where
// attention_dot has fma(x, y, 0): the two differ only in the sign of a zero, which tile_tree's
// last addition of +0 clears (see there). (Results go through arrays: returned by value as a
// struct of one vector, a result came out with only its low 128 bits under GCC 12 here.)
template <int H, typename T>
__attribute__((always_inline)) inline void tile_lane(const float* const* q, const T* tile, int whole, int l,
                                                     __m512* out) {
  __m512 k = load_keys(tile + l * kKeyTile);
  for (int h = 0; h < H; ++h) out[h] = _mm512_mul_ps(_mm512_set1_ps(q[h][l]), k);
  for (int i = kDotLanes; i < whole; i += kDotLanes) {
    k = load_keys(tile + (i + l) * kKeyTile);
    for (int h = 0; h < H; ++h) out[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h][i + l]), k, out[h]);
  }
}

// Node x of the tree's level whose pairs are Stride lanes apart: node(x, Stride) =
// node(x, 2 Stride) + node(x + Stride, 2 Stride), and at Stride 32 lane x + lane x + 32. Computed
// depth first, so few partial sums are live at once. kExact: whole is 64 and every product is
// exact (halves), so lane x + 32 is its product, and adding it is one fused multiply-add.
template <int Stride, int H, bool kExact, typename T>
__attribute__((always_inline)) inline void tile_node(const float* const* q, const T* tile, int whole, int x,
                                                     __m512* out) {
  __m512 a[H], b[H];
  if constexpr (Stride == kDotLanes / 2) {
    if (kExact) {
      const __m512 k0 = load_keys(tile + x * kKeyTile), k1 = load_keys(tile + (x + Stride) * kKeyTile);
      for (int h = 0; h < H; ++h)
        out[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h][x + Stride]), k1, _mm512_mul_ps(_mm512_set1_ps(q[h][x]), k0));
      return;
    }
    tile_lane<H>(q, tile, whole, x, a);
    tile_lane<H>(q, tile, whole, x + Stride, b);
  } else {
    tile_node<2 * Stride, H, kExact>(q, tile, whole, x, a);
    tile_node<2 * Stride, H, kExact>(q, tile, whole, x + Stride, b);
  }
  for (int h = 0; h < H; ++h) out[h] = _mm512_add_ps(a[h], b[h]);
}

// H heads' float sums over dimensions [0, whole) against a tile's sixteen keys. The root is added
// to +0: attention_dot's sums are never -0 (each lane starts as fma(x, y, +0), and a sum is -0
// only when both terms are), while starting from a multiply may leave -0 where it has +0; every
// nonzero value is the same either way.
template <int H, bool kExact, typename T>
inline void tile_tree(const float* const* q, const T* tile, int whole, __m512* sums) {
  tile_node<1, H, kExact>(q, tile, whole, 0, sums);
  for (int h = 0; h < H; ++h) sums[h] = _mm512_add_ps(sums[h], _mm512_setzero_ps());
}

constexpr int64_t kScoresAhead = 4;

// H heads' scores against the tiles holding slots [begin, end): the tree over dimensions
// [0, whole), then the dimensions [whole, hd) added in double. Whole tiles are read (they lie
// within the cache); only the slots in [begin, end) are stored.
template <int H, bool kExact, typename T>
void scores_tree(const float* const* q, int hd, const T* k, int64_t tile_stride, int64_t begin, int64_t end,
                 float scale, float* const* s) {
  const int whole = hd - hd % kDotLanes;
  const int64_t t_end = (end + kKeyTile - 1) / kKeyTile;
  for (int64_t t = begin / kKeyTile; t < t_end; ++t) {
    const T* tile = k + t * tile_stride;
    // At depth the keys come from memory, a tile (2 KiB for 64 dimensions of halves) per step of
    // arithmetic: each tile fetches the one kScoresAhead on, so the reads stay ahead (an address
    // computed as an integer: it may lie past the cache).
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(tile) + kScoresAhead * tile_stride * sizeof(T);
    for (int64_t b = 0; b < int64_t{kKeyTile} * hd * int64_t{sizeof(T)}; b += 64)
      _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T0);
    const __mmask16 lanes = tile_lanes(t, begin, end);
    __m512 sums[H];
    tile_tree<H, kExact>(q, tile, whole, sums);
    for (int h = 0; h < H; ++h) {
      if (whole == hd) {
        store_tile(sums[h], scale, t * kKeyTile, begin, lanes, s[h]);
        continue;
      }
      __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(sums[h]));
      __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(sums[h], 1));
      for (int d = whole; d < hd; ++d) {
        const __m512 p = _mm512_mul_ps(_mm512_set1_ps(q[h][d]), load_keys(tile + d * kKeyTile));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
      }
      store_scores(lo, hi, scale, t * kKeyTile, begin, lanes, s[h]);
    }
  }
}

template <bool kExact, typename T>
void scores_tree_heads(const float* q, int n_q, int hd, const T* k, int64_t tile_stride, int64_t begin,
                       int64_t end, float scale, float* s, int64_t s_stride) {
  int h = 0;
  for (; h + 2 <= n_q; h += 2) {
    const float* qs[2] = {q + h * hd, q + (h + 1) * hd};
    float* ss[2] = {s + h * s_stride, s + (h + 1) * s_stride};
    scores_tree<2, kExact>(qs, hd, k, tile_stride, begin, end, scale, ss);
  }
  if (h < n_q) {
    const float* qs[1] = {q + h * hd};
    float* ss[1] = {s + h * s_stride};
    scores_tree<1, kExact>(qs, hd, k, tile_stride, begin, end, scale, ss);
  }
}

// Heads narrower than 64 dimensions: double sums, dimension by dimension.
// One query head over tiles [t0, t0 + NB): per dimension a float product per key, widened to
// double and added to the key's sum. Whole tiles are read (they lie within the cache); only the
// slots in [begin, end) are stored.
template <int NB, typename T>
void scores_run(const float* qh, int hd, const T* k, int64_t tile_stride, int64_t t0, int64_t begin, int64_t end,
                float scale, float* s) {
  __m512d lo[NB], hi[NB];  // lanes 0-7 and 8-15 of each tile
  for (int b = 0; b < NB; ++b) lo[b] = hi[b] = _mm512_setzero_pd();
  for (int d = 0; d < hd; ++d) {
    const __m512 qd = _mm512_set1_ps(qh[d]);
    for (int b = 0; b < NB; ++b) {
      const __m512 p = _mm512_mul_ps(qd, load_keys(k + (t0 + b) * tile_stride + d * kKeyTile));
      lo[b] = _mm512_add_pd(lo[b], _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
      hi[b] = _mm512_add_pd(hi[b], _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
    }
  }
  for (int b = 0; b < NB; ++b)
    store_scores(lo[b], hi[b], scale, (t0 + b) * kKeyTile, begin, tile_lanes(t0 + b, begin, end), s);
}

// Two query heads over tiles [t0, t0 + NB), every value a half: a product is exact in float, so
// double(float(q * k)) added to a sum equals fma(double(q), double(k), sum). Each eight keys are
// widened once, straight from their halves, for both heads. q2: the two heads' queries as
// doubles, dimension by dimension (q2[2d] head a, q2[2d + 1] head b), converted once per span,
// not once per run of tiles: a broadcast from memory is a load, while converting and broadcasting
// took two of the operations the key conversions compete for.
template <int NB>
void scores_run_halves2(const double* q2, int hd, const uint16_t* k, int64_t tile_stride, int64_t t0,
                        int64_t begin, int64_t end, float scale, float* sa, float* sb) {
  __m512d lo[2][NB], hi[2][NB];
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < NB; ++b) lo[h][b] = hi[h][b] = _mm512_setzero_pd();
  for (int d = 0; d < hd; ++d) {
    const __m512d q[2] = {_mm512_set1_pd(q2[2 * d]), _mm512_set1_pd(q2[2 * d + 1])};
    for (int b = 0; b < NB; ++b) {
      const uint16_t* kp = k + (t0 + b) * tile_stride + d * kKeyTile;
      const __m512d k_lo = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kp))));
      const __m512d k_hi = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kp + 8))));
      for (int h = 0; h < 2; ++h) {
        lo[h][b] = _mm512_fmadd_pd(q[h], k_lo, lo[h][b]);
        hi[h][b] = _mm512_fmadd_pd(q[h], k_hi, hi[h][b]);
      }
    }
  }
  float* out[2] = {sa, sb};
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < NB; ++b)
      store_scores(lo[h][b], hi[h][b], scale, (t0 + b) * kKeyTile, begin, tile_lanes(t0 + b, begin, end), out[h]);
}

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// H heads' output dimensions [16 * c0, 16 * (c0 + C)) clipped to hd, over every key in order.
// Only the last register may be partial (kTail: hd not a multiple of 16, and this run reaches its
// end); the others are loaded and stored whole.
inline __m512 load16(const float* x, bool masked, __mmask16 m) {
  return masked ? _mm512_maskz_loadu_ps(m, x) : _mm512_loadu_ps(x);
}
inline __m512 load16(const uint16_t* x, bool masked, __mmask16 m) {
  return _mm512_cvtph_ps(masked ? _mm256_maskz_loadu_epi16(m, x) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
}

constexpr int64_t kValuesAhead = 16;

// kFused: weights and values are halves, so each float product is exact and adding it equals one
// fused multiply-add (the same numbers, one operation fewer).
template <int H, int C, bool kTail, bool kFused, typename V>
void values_run(const float* p, int64_t p_stride, int64_t len, const V* v, int64_t v_stride, int hd, int c0,
                float* o) {
  const __mmask16 last = kTail ? tail_mask(hd - 16 * (c0 + C - 1)) : __mmask16(0xFFFF);
  auto load = [&](const auto* x, int c) { return load16(x, kTail && c == C - 1, last); };
  // The loops that load and store the accumulators are unrolled by hand (pragma): GCC 12 at -O3
  // otherwise kept acc in memory as well, storing all of it at every key (8 dead stores per key
  // for two heads of 64 dimensions).
  __m512 acc[H][C];
#pragma GCC unroll 2
  for (int h = 0; h < H; ++h)
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[h][c] = load(o + h * hd + 16 * (c0 + c), c);
  // A head's values are 16 * C elements of every cache row, rows kv_dim apart: a strided read
  // of memory at depth, so each key also fetches the key kValuesAhead on (a prefetch past the
  // span's end only touches a line it does not use).
  constexpr int64_t kRowBytes = int64_t{16} * C * sizeof(V);
  for (int64_t j = 0; j < len; ++j) {
    // (an address computed as an integer: past the span it may lie outside the cache)
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(v + 16 * c0) + (j + kValuesAhead) * v_stride * sizeof(V);
    for (int64_t b = 0; b < kRowBytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(ahead + b), _MM_HINT_T0);
    __m512 vj[C];
    for (int c = 0; c < C; ++c) vj[c] = load(v + j * v_stride + 16 * (c0 + c), c);
    for (int h = 0; h < H; ++h) {
      const __m512 w = _mm512_set1_ps(p[h * p_stride + j]);
      for (int c = 0; c < C; ++c)
        acc[h][c] = kFused ? _mm512_fmadd_ps(w, vj[c], acc[h][c]) : _mm512_add_ps(acc[h][c], _mm512_mul_ps(w, vj[c]));
    }
  }
#pragma GCC unroll 2
  for (int h = 0; h < H; ++h)
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      float* dst = o + h * hd + 16 * (c0 + c);
      if (kTail && c == C - 1)
        _mm512_mask_storeu_ps(dst, last, acc[h][c]);
      else
        _mm512_storeu_ps(dst, acc[h][c]);
    }
}

template <int H, int C, bool kFused, typename V>
void values_run_any(const float* p, int64_t p_stride, int64_t len, const V* v, int64_t v_stride, int hd,
                    int c0, float* o) {
  if (16 * (c0 + C) > hd)
    values_run<H, C, true, kFused>(p, p_stride, len, v, v_stride, hd, c0, o);
  else
    values_run<H, C, false, kFused>(p, p_stride, len, v, v_stride, hd, c0, o);
}

template <int H, bool kFused, typename V>
void values_heads(const float* p, int64_t p_stride, int64_t len, const V* v, int64_t v_stride, int hd, float* o) {
  constexpr int kMaxC = 8 / H;
  const int regs = (hd + 15) / 16;
  for (int c0 = 0; c0 < regs; c0 += kMaxC) {
    switch (std::min(kMaxC, regs - c0)) {
      case 1: values_run_any<H, 1, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
      case 2: values_run_any<H, 2, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
      case 3: values_run_any<H, 3, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
      case 4: values_run_any<H, 4, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
      case 5: values_run_any<H, 5, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
      case 6: values_run_any<H, 6, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
      case 7: values_run_any<H, 7, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
      default: values_run_any<H, 8, kFused>(p, p_stride, len, v, v_stride, hd, c0, o); break;
    }
  }
}

}  // namespace

namespace {

// One head's scores, kMax tiles at a time, then the tiles left.
template <int kMax, typename T>
void scores_head(const float* qh, int hd, const T* k, int64_t tile_stride, int64_t begin, int64_t end, float scale,
                 float* s) {
  const int64_t t_end = (end + kKeyTile - 1) / kKeyTile;
  int64_t t0 = begin / kKeyTile;
  for (; t0 + kMax <= t_end; t0 += kMax) scores_run<kMax>(qh, hd, k, tile_stride, t0, begin, end, scale, s);
  switch (t_end - t0) {
    case 0: break;
    case 1: scores_run<1>(qh, hd, k, tile_stride, t0, begin, end, scale, s); break;
    case 2: scores_run<2>(qh, hd, k, tile_stride, t0, begin, end, scale, s); break;
    case 3: scores_run<3>(qh, hd, k, tile_stride, t0, begin, end, scale, s); break;
    case 4: scores_run<4>(qh, hd, k, tile_stride, t0, begin, end, scale, s); break;
    case 5: scores_run<5>(qh, hd, k, tile_stride, t0, begin, end, scale, s); break;
    case 6: scores_run<6>(qh, hd, k, tile_stride, t0, begin, end, scale, s); break;
    default: scores_run<7>(qh, hd, k, tile_stride, t0, begin, end, scale, s); break;
  }
}

}  // namespace

void avx512_attention_scores(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len,
                             float scale, float* s, int64_t s_stride) {
  if (len <= 0) return;
  const int64_t end = begin + len;
  if (hd >= kDotLanes) {
    if (!k.f16)
      scores_tree_heads<false>(q, n_q, hd, static_cast<const float*>(k.data), k.tile_stride, begin, end, scale, s,
                               s_stride);
    else if (hd < 2 * kDotLanes)
      scores_tree_heads<true>(q, n_q, hd, static_cast<const uint16_t*>(k.data), k.tile_stride, begin, end, scale, s,
                              s_stride);
    else
      scores_tree_heads<false>(q, n_q, hd, static_cast<const uint16_t*>(k.data), k.tile_stride, begin, end, scale,
                               s, s_stride);
    return;
  }
  if (!k.f16) {
    for (int h = 0; h < n_q; ++h)
      scores_head<8>(q + h * hd, hd, static_cast<const float*>(k.data), k.tile_stride, begin, end, scale,
                     s + h * s_stride);
    return;
  }
  const auto* kh = static_cast<const uint16_t*>(k.data);
  const int64_t t_end = (end + kKeyTile - 1) / kKeyTile;
  thread_local std::vector<double> q2_buf;
  if (q2_buf.size() < 2 * static_cast<size_t>(hd)) q2_buf.resize(2 * static_cast<size_t>(hd));
  double* q2 = q2_buf.data();
  int h = 0;
  for (; h + 2 <= n_q; h += 2) {
    const float* qa = q + h * hd;
    const float* qb = qa + hd;
    for (int d = 0; d < hd; ++d) {
      q2[2 * d] = qa[d];
      q2[2 * d + 1] = qb[d];
    }
    float* sa = s + h * s_stride;
    float* sb = sa + s_stride;
    int64_t t0 = begin / kKeyTile;
    for (; t0 + 6 <= t_end; t0 += 6) scores_run_halves2<6>(q2, hd, kh, k.tile_stride, t0, begin, end, scale, sa, sb);
    switch (t_end - t0) {
      case 0: break;
      case 1: scores_run_halves2<1>(q2, hd, kh, k.tile_stride, t0, begin, end, scale, sa, sb); break;
      case 2: scores_run_halves2<2>(q2, hd, kh, k.tile_stride, t0, begin, end, scale, sa, sb); break;
      case 3: scores_run_halves2<3>(q2, hd, kh, k.tile_stride, t0, begin, end, scale, sa, sb); break;
      case 4: scores_run_halves2<4>(q2, hd, kh, k.tile_stride, t0, begin, end, scale, sa, sb); break;
      default: scores_run_halves2<5>(q2, hd, kh, k.tile_stride, t0, begin, end, scale, sa, sb); break;
    }
  }
  if (h < n_q) scores_head<8>(q + h * hd, hd, kh, k.tile_stride, begin, end, scale, s + h * s_stride);
}

namespace {

template <bool kFused, typename V>
void values(const float* p, int64_t p_stride, int n_q, int64_t len, const V* v, int64_t v_stride, int hd, float* o) {
  int h = 0;
  for (; h + 2 <= n_q; h += 2) values_heads<2, kFused>(p + h * p_stride, p_stride, len, v, v_stride, hd, o + h * hd);
  if (h < n_q) values_heads<1, kFused>(p + h * p_stride, p_stride, len, v, v_stride, hd, o + h * hd);
}

}  // namespace

void avx512_attention_values(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                             int64_t v_stride, int hd, float* o) {
  values<false>(p, p_stride, n_q, len, v, v_stride, hd, o);
}

void avx512_attention_values_f16(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                                 int64_t v_stride, int hd, float* o, bool halves) {
  if (halves) values<true>(p, p_stride, n_q, len, v, v_stride, hd, o);
  else values<false>(p, p_stride, n_q, len, v, v_stride, hd, o);
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
#pragma GCC diagnostic pop
