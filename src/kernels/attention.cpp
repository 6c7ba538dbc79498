// Scalar attention loops and the choice between them and the AVX-512 ones (attention.h).
#include "kernels/attention.h"

#include <algorithm>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

// Every multiply and add as written: no contraction into fused multiply-adds.
#pragma GCC optimize("fp-contract=off")

namespace endless::kernels {

namespace detail {

namespace {

inline float key_value(float x) { return x; }
inline float key_value(uint16_t x) { return fp16_to_fp32(x); }

// Keys four tiles at a time, their sums side by side, the slot innermost (the AVX2 path has its
// own loop, attention_avx2.cpp, so this one is not cloned).
template <typename T>
void scores_tiles(const float* q, int n_q, int hd, const T* k, int64_t tile_stride, int64_t begin, int64_t len,
                  float scale, float* s, int64_t s_stride) {
  constexpr int kTiles = 4;
  double acc[kTiles * kKeyTile];
  const int64_t end = begin + len, t_end = (end + kKeyTile - 1) / kKeyTile;
  for (int h = 0; h < n_q; ++h)
    for (int64_t t0 = begin / kKeyTile; t0 < t_end; t0 += kTiles) {
      const int nt = static_cast<int>(std::min<int64_t>(kTiles, t_end - t0));
      for (double& a : acc) a = 0;
      for (int d = 0; d < hd; ++d) {
        const float qd = q[h * hd + d];
        for (int b = 0; b < nt; ++b) {
          const T* row = k + (t0 + b) * tile_stride + d * kKeyTile;
          for (int l = 0; l < kKeyTile; ++l) acc[b * kKeyTile + l] += qd * key_value(row[l]);
        }
      }
      for (int64_t j = std::max(begin, t0 * kKeyTile); j < std::min(end, (t0 + nt) * kKeyTile); ++j)
        s[h * s_stride + (j - begin)] = static_cast<float>(acc[j - t0 * kKeyTile]) * scale;
    }
}

}  // namespace

void attention_scores_scalar(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len,
                             float scale, float* s, int64_t s_stride) {
  if (len <= 0) return;
  if (k.f16)
    scores_tiles(q, n_q, hd, static_cast<const uint16_t*>(k.data), k.tile_stride, begin, len, scale, s, s_stride);
  else
    scores_tiles(q, n_q, hd, static_cast<const float*>(k.data), k.tile_stride, begin, len, scale, s, s_stride);
}

// Written so the compiler can vectorize them (dimensions innermost) and cloned for AVX2: the AVX2
// path runs these.
__attribute__((target_clones("avx2", "default")))
void attention_values_scalar(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                             int64_t v_stride, int hd, float* o) {
  for (int h = 0; h < n_q; ++h) {
    float* oh = o + h * hd;
    for (int64_t j = 0; j < len; ++j) {
      const float w = p[h * p_stride + j];
      const float* vj = v + j * v_stride;
      for (int d = 0; d < hd; ++d) oh[d] += w * vj[d];
    }
  }
}

__attribute__((target_clones("avx2", "default")))
void attention_values_f16_scalar(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                                 int64_t v_stride, int hd, float* o) {
  for (int h = 0; h < n_q; ++h) {
    float* oh = o + h * hd;
    for (int64_t j = 0; j < len; ++j) {
      const float w = p[h * p_stride + j];
      const uint16_t* vj = v + j * v_stride;
      for (int d = 0; d < hd; ++d) oh[d] += w * fp16_to_fp32(vj[d]);
    }
  }
}

}  // namespace detail

void attention_scores(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len, float scale,
                      float* s, int64_t s_stride) {
  if (active_isa() == Isa::avx512)
    detail::avx512_attention_scores(q, n_q, hd, k, begin, len, scale, s, s_stride);
  else if (active_isa() == Isa::avx2)
    detail::avx2_attention_scores(q, n_q, hd, k, begin, len, scale, s, s_stride);
  else
    detail::attention_scores_scalar(q, n_q, hd, k, begin, len, scale, s, s_stride);
}

void attention_values_f16(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                          int64_t v_stride, int hd, float* o, bool halves) {
  if (active_isa() == Isa::avx512)
    detail::avx512_attention_values_f16(p, p_stride, n_q, len, v, v_stride, hd, o, halves);
  else
    detail::attention_values_f16_scalar(p, p_stride, n_q, len, v, v_stride, hd, o);
}

void attention_values(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                      int64_t v_stride, int hd, float* o) {
  if (active_isa() == Isa::avx512)
    detail::avx512_attention_values(p, p_stride, n_q, len, v, v_stride, hd, o);
  else
    detail::attention_values_scalar(p, p_stride, n_q, len, v, v_stride, hd, o);
}

}  // namespace endless::kernels
