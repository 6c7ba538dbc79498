// The two inner loops of attention, for one KV head and the query heads that share it, with
// Engine::attention_reference's arithmetic exactly: a score is a sum in double, dimension by
// dimension, of float products (exact when queries and keys are half-precision values, as with
// an F16 cache); a weighted value is a float multiply then a float add per key, keys in order.
// The scalar loops and the AVX-512 ones (many such sums side by side) give the same numbers bit
// for bit.
#pragma once
#include <cstdint>

namespace endless::kernels {

// Scores of n_q query heads against len keys stored transposed (dimension d of key j at
// kt[d * kt_stride + j]): s[h * s_stride + j] = float(sum in double over d = 0..hd-1, in order,
// of the float product q[h * hd + d] * key_j[d]) * scale.
// halves: every value of q and kt is a half-precision value (an F16 cache, whose queries are
// rounded to half). Their float products are then exact, so the AVX-512 loop may add each to its
// double sum as a fused multiply-add of the two values widened to double (the same numbers),
// widening each key once for two heads.
void attention_scores(const float* q, int n_q, int hd, const float* kt, int64_t kt_stride, int64_t len,
                      float scale, float* s, int64_t s_stride, bool halves = false);

// Weighted values, accumulated into o: for j = 0..len-1 in order, for every d,
// o[h * hd + d] += p[h * p_stride + j] * v[j * v_stride + d] (product rounded, then the sum).
void attention_values(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                      int64_t v_stride, int hd, float* o);

// The same with half-precision values (an F16 cache), read in place: each is widened to float
// (exactly) as it is used. halves: every weight in p is a half too (as attention rounds them for an
// F16 cache), so each product is exact and the AVX-512 loop fuses it with its add (same numbers).
void attention_values_f16(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                          int64_t v_stride, int hd, float* o, bool halves = false);

// Rows to columns, as floats: dst[c * dst_stride + r] = rows[r * n_cols + c] for r < n_rows,
// c < n_cols; rows are F32 or (f16) half precision. Lays keys out for attention_scores.
void transpose_to_f32(const void* rows, bool f16, int64_t n_rows, int n_cols, float* dst, int64_t dst_stride);

namespace detail {
void attention_scores_scalar(const float* q, int n_q, int hd, const float* kt, int64_t kt_stride, int64_t len,
                             float scale, float* s, int64_t s_stride);
void attention_values_scalar(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                             int64_t v_stride, int hd, float* o);
void attention_values_f16_scalar(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                                 int64_t v_stride, int hd, float* o);
void transpose_to_f32_scalar(const void* rows, bool f16, int64_t n_rows, int n_cols, float* dst, int64_t dst_stride);
void avx512_attention_values_f16(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                                 int64_t v_stride, int hd, float* o, bool halves = false);
void avx512_transpose_to_f32(const void* rows, bool f16, int64_t n_rows, int n_cols, float* dst, int64_t dst_stride);
void avx512_attention_scores(const float* q, int n_q, int hd, const float* kt, int64_t kt_stride, int64_t len,
                             float scale, float* s, int64_t s_stride, bool halves = false);
void avx512_attention_values(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                             int64_t v_stride, int hd, float* o);
}  // namespace detail

}  // namespace endless::kernels
