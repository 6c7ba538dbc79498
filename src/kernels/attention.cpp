// Scalar attention loops and the choice between them and the AVX-512 ones (attention.h).
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

// Every multiply and add as written: no contraction into fused multiply-adds.
#pragma GCC optimize("fp-contract=off")

namespace endless::kernels {

double attention_dot(const float* x, const float* y, int n) {
  const int whole = n - n % kDotLanes;
  double sum = 0;
  if (whole > 0) {
    float lane[kDotLanes];
    for (int l = 0; l < kDotLanes; ++l) lane[l] = std::fma(x[l], y[l], 0.0f);
    for (int i = kDotLanes; i < whole; i += kDotLanes)
      for (int l = 0; l < kDotLanes; ++l) lane[l] = std::fma(x[i + l], y[i + l], lane[l]);
    for (int half = kDotLanes / 2; half > 0; half /= 2)
      for (int l = 0; l < half; ++l) lane[l] += lane[l + half];
    sum = lane[0];
  }
  for (int d = whole; d < n; ++d) sum += x[d] * y[d];  // a float product, added in double
  return sum;
}

namespace detail {

namespace {

inline float key_value(float x) { return x; }
inline float key_value(uint16_t x) { return fp16_to_fp32(x); }

// Each key gathered from its tile (dimension d of slot j is kKeyTile values after dimension d - 1)
// and dotted with every head's query.
template <typename T>
void scores_tiles(const float* q, int n_q, int hd, const T* k, int64_t tile_stride, int64_t begin, int64_t len,
                  float scale, float* s, int64_t s_stride) {
  thread_local std::vector<float> key;
  key.resize(hd);
  for (int64_t j = begin; j < begin + len; ++j) {
    const T* first = k + (j / kKeyTile) * tile_stride + j % kKeyTile;
    for (int d = 0; d < hd; ++d) key[d] = key_value(first[d * kKeyTile]);
    for (int h = 0; h < n_q; ++h)
      s[h * s_stride + (j - begin)] = static_cast<float>(attention_dot(q + h * hd, key.data(), hd)) * scale;
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
