// AVX2 attention scores (attention.h): attention_dot's arithmetic, eight keys' sums side by side.
// Keys come from the cache's tiles, halves widened with F16C as they are loaded (the compiler's
// vectorization of the scalar loop widens them with a dozen integer operations each).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/attention.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#pragma GCC target("avx2,fma,f16c")

namespace endless::kernels::detail {

namespace {

inline __m256 load8(const float* k) { return _mm256_loadu_ps(k); }
inline __m256 load8(const uint16_t* k) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k))); }

// Heads of 64 dimensions or more: attention_dot's lanes and tree, eight keys (half a tile) side by
// side, so each level of the tree is one addition of registers per pair of lanes.

// Lane l (< 64) of eight keys' dot products: fused multiply-adds from 0, one per block of 64
// dimensions below whole.
template <typename T>
inline __m256 lane8(const float* qh, const T* keys, int whole, int l) {
  __m256 acc = _mm256_fmadd_ps(_mm256_set1_ps(qh[l]), load8(keys + l * kKeyTile), _mm256_setzero_ps());
  for (int i = kDotLanes; i < whole; i += kDotLanes)
    acc = _mm256_fmadd_ps(_mm256_set1_ps(qh[i + l]), load8(keys + (i + l) * kKeyTile), acc);
  return acc;
}

// One head's scores against the tiles holding slots [begin, end): per half tile, the tree over
// dimensions [0, whole) in float, then the dimensions [whole, hd) added in double.
template <typename T>
void scores_tree(const float* qh, int hd, const T* k, int64_t tile_stride, int64_t begin, int64_t end, float scale,
                 float* s) {
  const int whole = hd - hd % kDotLanes;
  const int64_t t_end = (end + kKeyTile - 1) / kKeyTile;
  for (int64_t t = begin / kKeyTile; t < t_end; ++t) {
    alignas(32) float f[kKeyTile];
    for (int half = 0; half < 2; ++half) {
      const T* keys = k + t * tile_stride + 8 * half;
      __m256 v[8];  // the tree's level of eight lanes
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l) {  // lane l of the level of sixteen: (l + l+32) + (l+16 + l+48)
        const __m256 sum = _mm256_add_ps(_mm256_add_ps(lane8(qh, keys, whole, l), lane8(qh, keys, whole, l + 32)),
                                         _mm256_add_ps(lane8(qh, keys, whole, l + 16), lane8(qh, keys, whole, l + 48)));
        v[l % 8] = l < 8 ? sum : _mm256_add_ps(v[l % 8], sum);  // l - 8 + l
      }
      for (int l = 0; l < 4; ++l) v[l] = _mm256_add_ps(v[l], v[l + 4]);
      for (int l = 0; l < 2; ++l) v[l] = _mm256_add_ps(v[l], v[l + 2]);
      __m256 sums = _mm256_add_ps(v[0], v[1]);
      if (whole < hd) {
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(sums));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(sums, 1));
        for (int d = whole; d < hd; ++d) {
          const __m256 p = _mm256_mul_ps(_mm256_set1_ps(qh[d]), load8(keys + d * kKeyTile));
          lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
          hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
        }
        sums = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
      }
      _mm256_store_ps(f + 8 * half, _mm256_mul_ps(sums, _mm256_set1_ps(scale)));
    }
    const int64_t first = t * kKeyTile;
    for (int64_t j = std::max(begin, first); j < std::min(end, first + kKeyTile); ++j) s[j - begin] = f[j - first];
  }
}

// Narrower heads: double sums, dimension by dimension.
// One query head over tiles [t0, t0 + NB): per dimension a float product per key, widened to
// double and added to the key's sum (four keys per register). Whole tiles are read (they lie in
// the cache); only the slots in [begin, end) are stored.
template <int NB, typename T>
void scores_run(const float* qh, int hd, const T* k, int64_t tile_stride, int64_t t0, int64_t begin, int64_t end,
                float scale, float* s) {
  __m256d acc[NB][4];
  for (int b = 0; b < NB; ++b)
    for (int i = 0; i < 4; ++i) acc[b][i] = _mm256_setzero_pd();
  for (int d = 0; d < hd; ++d) {
    const __m256 qd = _mm256_set1_ps(qh[d]);
    for (int b = 0; b < NB; ++b) {
      const T* row = k + (t0 + b) * tile_stride + d * kKeyTile;
      for (int half = 0; half < 2; ++half) {
        const __m256 p = _mm256_mul_ps(qd, load8(row + 8 * half));
        acc[b][2 * half] = _mm256_add_pd(acc[b][2 * half], _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
        acc[b][2 * half + 1] = _mm256_add_pd(acc[b][2 * half + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
      }
    }
  }
  for (int b = 0; b < NB; ++b) {
    alignas(32) float f[kKeyTile];
    for (int i = 0; i < 4; ++i)
      _mm_store_ps(f + 4 * i, _mm_mul_ps(_mm256_cvtpd_ps(acc[b][i]), _mm_set1_ps(scale)));
    const int64_t first = (t0 + b) * kKeyTile;
    for (int64_t j = std::max(begin, first); j < std::min(end, first + kKeyTile); ++j) s[j - begin] = f[j - first];
  }
}

template <typename T>
void scores_head(const float* qh, int hd, const T* k, int64_t tile_stride, int64_t begin, int64_t end, float scale,
                 float* s) {
  const int64_t t_end = (end + kKeyTile - 1) / kKeyTile;
  int64_t t0 = begin / kKeyTile;
  for (; t0 + 2 <= t_end; t0 += 2) scores_run<2>(qh, hd, k, tile_stride, t0, begin, end, scale, s);
  if (t0 < t_end) scores_run<1>(qh, hd, k, tile_stride, t0, begin, end, scale, s);
}

}  // namespace

void avx2_attention_scores(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len,
                           float scale, float* s, int64_t s_stride) {
  if (len <= 0) return;
  for (int h = 0; h < n_q; ++h) {
    if (hd >= kDotLanes) {
      if (k.f16)
        scores_tree(q + h * hd, hd, static_cast<const uint16_t*>(k.data), k.tile_stride, begin, begin + len, scale,
                    s + h * s_stride);
      else
        scores_tree(q + h * hd, hd, static_cast<const float*>(k.data), k.tile_stride, begin, begin + len, scale,
                    s + h * s_stride);
    } else if (k.f16)
      scores_head(q + h * hd, hd, static_cast<const uint16_t*>(k.data), k.tile_stride, begin, begin + len, scale,
                  s + h * s_stride);
    else
      scores_head(q + h * hd, hd, static_cast<const float*>(k.data), k.tile_stride, begin, begin + len, scale,
                  s + h * s_stride);
  }
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
