// The two inner loops of attention, for one KV head and the query heads that share it, with
// Engine::attention_reference's arithmetic exactly: a score is attention_dot of the query and the
// key (below); a weighted value is a float multiply then a float add per key, keys in order.
// The scalar loops and the AVX2 and AVX-512 ones (many keys side by side) give the same numbers
// bit for bit.
#pragma once
#include <cstdint>

namespace endless::kernels {

constexpr int kDotLanes = 64;

// A query-key dot product in the order of ggml_vec_dot_f16 as an AVX-512 build of ggml computes
// it, which llama.cpp runs for a single token's attention scores:
//  - the dimensions [0, whole), whole = n rounded down to a multiple of 64, go to 64 lanes: lane l
//    starts as fma(x[l], y[l], 0) and takes fma(x[i + l], y[i + l], lane) for every further block
//    of 64, i = 64, 128, ...;
//  - the lanes are summed as halves: lane l += lane l + 32 (l < 32), then l + 16, l + 8, l + 4,
//    l + 2, l + 1, all in float;
//  - the dimensions [whole, n) are added to that sum in double, each a float product.
// With half-precision x and y (an F16 cache rounds the query) every product is exact, and the
// result is bit for bit ggml's. Heads narrower than 64 dimensions (stories260K's 8) are then
// double sums of float products, dimension by dimension. ggml's F32 dot product has the same
// lanes and tree but adds the dimensions past the last block in float; an F32 cache here keeps the
// one definition above.
double attention_dot(const float* x, const float* y, int n);

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
// s[h * s_stride + j] = float(attention_dot(q + h * hd, key_{begin+j}, hd)) * scale.
// With half-precision keys (f16) every value of q must be a half too (attention rounds queries
// for an F16 cache): the float products are then exact, which the AVX-512 loops use to fuse
// operations (the same numbers), widening each key once for two heads.
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
