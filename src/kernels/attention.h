// The two inner loops of attention, for one KV head and the query heads that share it, with
// Engine::attention_reference's arithmetic exactly: a score is a sum in double, dimension by
// dimension, of float products (exact when queries and keys are half-precision values, as with
// an F16 cache); a weighted value is a float multiply then a float add per key, keys in order.
// The scalar loops and the AVX-512 ones (many such sums side by side) give the same numbers bit
// for bit.
#pragma once
#include <cstdint>

namespace endless::kernels {

// Keys as the KV cache keeps them (memory/kv_store.h): tiles of kKeyTile consecutive slots, each
// a [dimension][slot] block, so dimension d of sixteen consecutive keys is one vector. Dimension d
// of slot j's key is data[(j / kKeyTile) * tile_stride + d * kKeyTile + j % kKeyTile], counted
// from the first dimension the scores use; floats, or half-precision values (f16).
constexpr int kKeyTile = 16;
struct KeyTiles {
  const void* data;
  int64_t tile_stride;  // elements from one tile to the next
  bool f16;
};

// Scores of n_q query heads against the keys of slots [begin, begin + len):
// s[h * s_stride + j] = float(sum in double over d = 0..hd-1, in order, of the float product
// q[h * hd + d] * key_{begin+j}[d]) * scale.
// With half-precision keys (f16) every value of q must be a half too (attention rounds queries
// for an F16 cache): the float products are then exact, so the AVX-512 loop adds each to its
// double sum as a fused multiply-add of the two values widened to double (the same numbers),
// widening each key once for two heads.
void attention_scores(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len, float scale,
                      float* s, int64_t s_stride);

// Weighted values, accumulated into o: for j = 0..len-1 in order, for every d,
// o[h * hd + d] += p[h * p_stride + j] * v[j * v_stride + d] (product rounded, then the sum).
void attention_values(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                      int64_t v_stride, int hd, float* o);

// The same with half-precision values (an F16 cache), read in place: each is widened to float
// (exactly) as it is used. halves: every weight in p is a half too (as attention rounds them for an
// F16 cache), so each product is exact and the AVX-512 loop fuses it with its add (same numbers).
void attention_values_f16(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                          int64_t v_stride, int hd, float* o, bool halves = false);

namespace detail {
void attention_scores_scalar(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len,
                             float scale, float* s, int64_t s_stride);
void attention_values_scalar(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                             int64_t v_stride, int hd, float* o);
void attention_values_f16_scalar(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                                 int64_t v_stride, int hd, float* o);
void avx512_attention_values_f16(const float* p, int64_t p_stride, int n_q, int64_t len, const uint16_t* v,
                                 int64_t v_stride, int hd, float* o, bool halves = false);
void avx512_attention_scores(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len,
                             float scale, float* s, int64_t s_stride);
void avx2_attention_scores(const float* q, int n_q, int hd, const KeyTiles& k, int64_t begin, int64_t len, float scale,
                           float* s, int64_t s_stride);
void avx512_attention_values(const float* p, int64_t p_stride, int n_q, int64_t len, const float* v,
                             int64_t v_stride, int hd, float* o);
}  // namespace detail

}  // namespace endless::kernels
