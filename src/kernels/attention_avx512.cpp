// AVX-512 attention loops (attention.h): the same arithmetic as the scalar loops, many sums side
// by side, so the numbers are identical.
//  - Scores: keys lie transposed, so sixteen keys' dimension d are one vector; up to eight vectors
//    (128 keys) of one query head advance together: per dimension a float multiply, widened to
//    two vectors of doubles, each added to its running sum (sixteen in registers). With
//    half-precision inputs the float products are exact, and two heads go together, each key
//    vector widened once and fused-multiply-added into both heads' double sums (same numbers).
//  - Weighted values: a head's output lives in registers (16 dimensions each, the last one masked
//    when the head dimension is not a multiple of 16) while the keys go by in order; two heads of
//    a group go together, so each value vector loaded serves both and eight chains are in flight.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

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

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// Sixteen keys' double sums (keys 0-7 in lo, 8-15 in hi) rounded to float and scaled, into dst
// (only the keys in m where masked).
inline void store_scores(__m512d lo, __m512d hi, float scale, float* dst, bool masked, __mmask16 m) {
  const __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
  const __m512 v = _mm512_mul_ps(f, _mm512_set1_ps(scale));
  if (masked) _mm512_mask_storeu_ps(dst, m, v);
  else _mm512_storeu_ps(dst, v);
}

// Keys [j0, j0 + 16 * NB) clipped to len, for one query head.
template <int NB, bool kTail>
void scores_run(const float* qh, int hd, const float* kt, int64_t stride, int64_t j0, int64_t len, float scale,
                float* s) {
  __m512d lo[NB], hi[NB];  // keys 0-7 and 8-15 of each vector
  for (int b = 0; b < NB; ++b) lo[b] = hi[b] = _mm512_setzero_pd();
  // Only the last vector of a run may be partial (kTail); the others are loaded whole.
  const __mmask16 last = kTail ? tail_mask(len - (j0 + 16 * (NB - 1))) : __mmask16(0xFFFF);
  for (int d = 0; d < hd; ++d) {
    const __m512 qd = _mm512_set1_ps(qh[d]);
    const float* row = kt + d * stride + j0;
    for (int b = 0; b < NB; ++b) {
      const __m512 k = kTail && b == NB - 1 ? _mm512_maskz_loadu_ps(last, row + 16 * b) : _mm512_loadu_ps(row + 16 * b);
      const __m512 p = _mm512_mul_ps(qd, k);
      lo[b] = _mm512_add_pd(lo[b], _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
      hi[b] = _mm512_add_pd(hi[b], _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
    }
  }
  for (int b = 0; b < NB; ++b) store_scores(lo[b], hi[b], scale, s + j0 + 16 * b, kTail && b == NB - 1, last);
}

// Two query heads over keys [j0, j0 + 16 * NB) clipped to len, every value a half: a product is
// exact in float, so double(float(q * k)) added to a sum equals fma(double(q), double(k), sum).
// Each key vector is widened once for both heads.
template <int NB, bool kTail>
void scores_run_halves2(const float* qa, const float* qb, int hd, const float* kt, int64_t stride, int64_t j0,
                        int64_t len, float scale, float* sa, float* sb) {
  __m512d lo[2][NB], hi[2][NB];
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < NB; ++b) lo[h][b] = hi[h][b] = _mm512_setzero_pd();
  const __mmask16 last = kTail ? tail_mask(len - (j0 + 16 * (NB - 1))) : __mmask16(0xFFFF);
  for (int d = 0; d < hd; ++d) {
    const __m512d q[2] = {_mm512_set1_pd(qa[d]), _mm512_set1_pd(qb[d])};
    const float* row = kt + d * stride + j0;
    for (int b = 0; b < NB; ++b) {
      const __m512 k = kTail && b == NB - 1 ? _mm512_maskz_loadu_ps(last, row + 16 * b) : _mm512_loadu_ps(row + 16 * b);
      const __m512d k_lo = _mm512_cvtps_pd(_mm512_castps512_ps256(k));
      const __m512d k_hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(k, 1));
      for (int h = 0; h < 2; ++h) {
        lo[h][b] = _mm512_fmadd_pd(q[h], k_lo, lo[h][b]);
        hi[h][b] = _mm512_fmadd_pd(q[h], k_hi, hi[h][b]);
      }
    }
  }
  float* out[2] = {sa, sb};
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < NB; ++b) store_scores(lo[h][b], hi[h][b], scale, out[h] + j0 + 16 * b, kTail && b == NB - 1, last);
}

// H heads' output dimensions [16 * c0, 16 * (c0 + C)) clipped to hd, over every key in order.
// Only the last register may be partial (kTail: hd not a multiple of 16, and this run reaches its
// end); the others are loaded and stored whole.
inline __m512 load16(const float* x, bool masked, __mmask16 m) {
  return masked ? _mm512_maskz_loadu_ps(m, x) : _mm512_loadu_ps(x);
}
inline __m512 load16(const uint16_t* x, bool masked, __mmask16 m) {
  return _mm512_cvtph_ps(masked ? _mm256_maskz_loadu_epi16(m, x) : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
}

// kFused: weights and values are halves, so each float product is exact and adding it equals one
// fused multiply-add (the same numbers, one operation fewer).
template <int H, int C, bool kTail, bool kFused, typename V>
void values_run(const float* p, int64_t p_stride, int64_t len, const V* v, int64_t v_stride, int hd, int c0,
                float* o) {
  const __mmask16 last = kTail ? tail_mask(hd - 16 * (c0 + C - 1)) : __mmask16(0xFFFF);
  auto load = [&](const auto* x, int c) { return load16(x, kTail && c == C - 1, last); };
  __m512 acc[H][C];
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < C; ++c) acc[h][c] = load(o + h * hd + 16 * (c0 + c), c);
  for (int64_t j = 0; j < len; ++j) {
    __m512 vj[C];
    for (int c = 0; c < C; ++c) vj[c] = load(v + j * v_stride + 16 * (c0 + c), c);
    for (int h = 0; h < H; ++h) {
      const __m512 w = _mm512_set1_ps(p[h * p_stride + j]);
      for (int c = 0; c < C; ++c)
        acc[h][c] = kFused ? _mm512_fmadd_ps(w, vj[c], acc[h][c]) : _mm512_add_ps(acc[h][c], _mm512_mul_ps(w, vj[c]));
    }
  }
  for (int h = 0; h < H; ++h)
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

void avx512_attention_scores(const float* q, int n_q, int hd, const float* kt, int64_t kt_stride, int64_t len,
                             float scale, float* s, int64_t s_stride, bool halves) {
  int h0 = 0;
  if (halves) {
    for (; h0 + 2 <= n_q; h0 += 2) {
      const float* qa = q + h0 * hd;
      const float* qb = qa + hd;
      float* sa = s + h0 * s_stride;
      float* sb = sa + s_stride;
      int64_t j0 = 0;
      for (; j0 + 64 <= len; j0 += 64) scores_run_halves2<4, false>(qa, qb, hd, kt, kt_stride, j0, len, scale, sa, sb);
      switch ((len - j0 + 15) / 16) {
        case 0: break;
        case 1: scores_run_halves2<1, true>(qa, qb, hd, kt, kt_stride, j0, len, scale, sa, sb); break;
        case 2: scores_run_halves2<2, true>(qa, qb, hd, kt, kt_stride, j0, len, scale, sa, sb); break;
        case 3: scores_run_halves2<3, true>(qa, qb, hd, kt, kt_stride, j0, len, scale, sa, sb); break;
        default: scores_run_halves2<4, true>(qa, qb, hd, kt, kt_stride, j0, len, scale, sa, sb); break;
      }
    }
  }
  for (int h = h0; h < n_q; ++h) {
    const float* qh = q + h * hd;
    float* sh = s + h * s_stride;
    int64_t j0 = 0;
    for (; j0 + 128 <= len; j0 += 128) scores_run<8, false>(qh, hd, kt, kt_stride, j0, len, scale, sh);
    switch ((len - j0 + 15) / 16) {
      case 0: break;
      case 1: scores_run<1, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;
      case 2: scores_run<2, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;
      case 3: scores_run<3, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;
      case 4: scores_run<4, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;
      case 5: scores_run<5, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;
      case 6: scores_run<6, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;
      case 7: scores_run<7, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;
      default: scores_run<8, true>(qh, hd, kt, kt_stride, j0, len, scale, sh); break;  // 113..127 keys
    }
  }
}

namespace {

template <bool kFused, typename V>
void values(const float* p, int64_t p_stride, int n_q, int64_t len, const V* v, int64_t v_stride, int hd, float* o) {
  int h = 0;
  for (; h + 2 <= n_q; h += 2) values_heads<2, kFused>(p + h * p_stride, p_stride, len, v, v_stride, hd, o + h * hd);
  if (h < n_q) values_heads<1, kFused>(p + h * p_stride, p_stride, len, v, v_stride, hd, o + h * hd);
}

// 16 rows of 16 floats to 16 columns in registers: pairs of rows interleaved, then pairs of
// pairs, then 128-bit lanes gathered (after the second step, x[4i + c] holds in its lane L the
// column 4L + c of rows 4i..4i+3).
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}

template <typename T>
void transpose(const T* rows, int64_t n_rows, int n_cols, float* dst, int64_t dst_stride) {
  for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
    const int64_t nr = std::min<int64_t>(16, n_rows - r0);
    const __mmask16 row_mask = tail_mask(nr);
    for (int c0 = 0; c0 < n_cols; c0 += 16) {
      const int nc = std::min(16, n_cols - c0);
      const __mmask16 col_mask = tail_mask(nc);
      __m512 x[16];
      for (int r = 0; r < 16; ++r)
        x[r] = r < nr ? load16(rows + (r0 + r) * n_cols + c0, nc < 16, col_mask) : _mm512_setzero_ps();
      transpose16(x);
      for (int c = 0; c < nc; ++c) _mm512_mask_storeu_ps(dst + (c0 + c) * dst_stride + r0, row_mask, x[c]);
    }
  }
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

void avx512_transpose_to_f32(const void* rows, bool f16, int64_t n_rows, int n_cols, float* dst, int64_t dst_stride) {
  if (f16)
    transpose(static_cast<const uint16_t*>(rows), n_rows, n_cols, dst, dst_stride);
  else
    transpose(static_cast<const float*>(rows), n_rows, n_cols, dst, dst_stride);
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
#pragma GCC diagnostic pop
