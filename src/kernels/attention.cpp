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

// Written so the compiler can vectorize them (keys innermost for the scores, dimensions for the
// values) and cloned for AVX2: the AVX2 path runs these. Contraction is off, so every clone
// computes the same numbers.
__attribute__((target_clones("avx2", "default")))
void attention_scores_scalar(const float* q, int n_q, int hd, const float* kt, int64_t kt_stride, int64_t len,
                             float scale, float* s, int64_t s_stride) {
  constexpr int64_t kBlock = 64;
  double acc[kBlock];
  for (int h = 0; h < n_q; ++h)
    for (int64_t j0 = 0; j0 < len; j0 += kBlock) {
      const int64_t nj = std::min(kBlock, len - j0);
      for (int64_t j = 0; j < nj; ++j) acc[j] = 0;
      for (int d = 0; d < hd; ++d) {
        const float qd = q[h * hd + d];
        const float* row = kt + d * kt_stride + j0;
        for (int64_t j = 0; j < nj; ++j) acc[j] += qd * row[j];
      }
      for (int64_t j = 0; j < nj; ++j) s[h * s_stride + j0 + j] = static_cast<float>(acc[j]) * scale;
    }
}

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

void transpose_to_f32_scalar(const void* rows, bool f16, int64_t n_rows, int n_cols, float* dst, int64_t dst_stride) {
  for (int64_t r = 0; r < n_rows; ++r)
    for (int c = 0; c < n_cols; ++c)
      dst[c * dst_stride + r] = f16 ? fp16_to_fp32(static_cast<const uint16_t*>(rows)[r * n_cols + c])
                                    : static_cast<const float*>(rows)[r * n_cols + c];
}

}  // namespace detail

void attention_scores(const float* q, int n_q, int hd, const float* kt, int64_t kt_stride, int64_t len,
                      float scale, float* s, int64_t s_stride, bool halves) {
  if (active_isa() == Isa::avx512)
    detail::avx512_attention_scores(q, n_q, hd, kt, kt_stride, len, scale, s, s_stride, halves);
  else
    detail::attention_scores_scalar(q, n_q, hd, kt, kt_stride, len, scale, s, s_stride);
}

void attention_values_f16(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                          int64_t v_stride, int hd, float* o, bool halves) {
  if (active_isa() == Isa::avx512)
    detail::avx512_attention_values_f16(p, p_stride, n_q, len, v, v_stride, hd, o, halves);
  else
    detail::attention_values_f16_scalar(p, p_stride, n_q, len, v, v_stride, hd, o);
}

void transpose_to_f32(const void* rows, bool f16, int64_t n_rows, int n_cols, float* dst, int64_t dst_stride) {
  if (active_isa() == Isa::avx512)
    detail::avx512_transpose_to_f32(rows, f16, n_rows, n_cols, dst, dst_stride);
  else
    detail::transpose_to_f32_scalar(rows, f16, n_rows, n_cols, dst, dst_stride);
}

void attention_values(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                      int64_t v_stride, int hd, float* o) {
  if (active_isa() == Isa::avx512)
    detail::avx512_attention_values(p, p_stride, n_q, len, v, v_stride, hd, o);
  else
    detail::attention_values_scalar(p, p_stride, n_q, len, v, v_stride, hd, o);
}

}  // namespace endless::kernels
