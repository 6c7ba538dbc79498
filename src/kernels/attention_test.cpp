#include "kernels/attention.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/internal.h"
#include "util/fp16.h"

namespace endless::kernels {
namespace {

struct Shape {
  int n_q, hd;
  int64_t len;
};

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  for (int n_q : {1, 2, 3, 4})
    for (int hd : {8, 16, 24, 64, 80, 128, 192, 256})
      for (int64_t len : {1, 15, 16, 17, 127, 128, 129, 300}) out.push_back({n_q, hd, len});
  return out;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Keys laid out as the KV cache keeps them (KeyTiles): slots [0, begin + len) of kv_dim values each,
// the head's dimensions from first_dim on; the slots before begin and the rest of the last tile
// hold other keys, which must not change a score.
struct Tiles {
  static constexpr int kFirstDim = 8;
  int hd, kv_dim;
  int64_t n_slots;
  std::vector<float> keys;    // [slot][kv_dim], the values the tiles hold, as floats
  std::vector<float> f32;     // the tiles
  std::vector<uint16_t> f16;  // the same keys as halves
  Tiles(int hd_, int64_t n, uint32_t seed, bool extreme_halves) : hd(hd_), kv_dim(hd_ + 2 * kFirstDim), n_slots(n) {
    const int64_t n_tiles = (n + kKeyTile - 1) / kKeyTile;
    keys = random_floats(n_tiles * kKeyTile * kv_dim, seed);
    std::mt19937 rng(seed);
    for (auto& x : keys) {
      if (extreme_halves && rng() % 50 == 0) x = std::clamp(x * 3e4f, -6e4f, 6e4f);  // near the top of the half range
      if (extreme_halves && rng() % 50 == 1) x *= 1e-6f;                             // subnormal halves
      x = fp16_to_fp32(fp32_to_fp16(x));  // halves, so both layouts hold the same keys
    }
    f32.resize(keys.size());
    f16.resize(keys.size());
    for (int64_t j = 0; j < n_tiles * kKeyTile; ++j)
      for (int d = 0; d < kv_dim; ++d) {
        const size_t at = (j / kKeyTile) * kv_dim * kKeyTile + d * kKeyTile + j % kKeyTile;
        f32[at] = keys[j * kv_dim + d];
        f16[at] = fp32_to_fp16(keys[j * kv_dim + d]);
      }
  }
  KeyTiles view(bool half) const {
    const int64_t first = int64_t{kFirstDim} * kKeyTile;
    return {half ? static_cast<const void*>(f16.data() + first) : static_cast<const void*>(f32.data() + first),
            int64_t{kv_dim} * kKeyTile, half};
  }
  float key(int64_t slot, int d) const { return keys[slot * kv_dim + kFirstDim + d]; }
};

// ggml_vec_dot_f16 and ggml_vec_dot_f32 as an AVX-512 build of ggml computes them, written here
// from their description: four registers of sixteen lanes take fused multiply-adds over blocks of
// 64 dimensions; then register 0 += 2, 1 += 3, 0 += 1, and _mm512_reduce_add_ps; the dimensions
// past the last block are added in double (the F16 version).
// GCC 12's own intrinsics headers warn about their undefined-upper-half idiom.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,f16c,fma"))) double ggml_avx512_dot(const float* x, const float* y, int n) {
  const int np = n & ~63;
  __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      sum[j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16 * j), _mm512_loadu_ps(y + i + 16 * j), sum[j]);
  sum[0] = _mm512_add_ps(sum[0], sum[2]);
  sum[1] = _mm512_add_ps(sum[1], sum[3]);
  sum[0] = _mm512_add_ps(sum[0], sum[1]);
  double r = _mm512_reduce_add_ps(sum[0]);
  for (int i = np; i < n; ++i) r += static_cast<double>(x[i] * y[i]);
  return r;
}
#pragma GCC diagnostic pop

TEST(Attention, DotIsGgmlsAvx512DotProductBitForBit) {
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU to run ggml's order with";
  uint32_t seed = 100;
  for (int n : {8, 48, 64, 80, 96, 128, 192, 256, 320})
    for (bool half : {true, false})
      for (int rep = 0; rep < 50; ++rep) {
        auto x = random_floats(n, ++seed), y = random_floats(n, ++seed);
        std::mt19937 rng(seed);
        for (auto* v : {&x, &y})
          for (auto& e : *v) {
            if (rng() % 40 == 0) e *= 3e3f;   // large products next to small ones: order matters
            if (rng() % 40 == 1) e *= 1e-5f;  // subnormal halves
            if (half) e = fp16_to_fp32(fp32_to_fp16(e));
          }
        // With float inputs ggml's F32 version adds the dimensions past the last block in float:
        // only whole blocks are compared there (attention.h).
        if (!half && n % 64 != 0) continue;
        const double ours = attention_dot(x.data(), y.data(), n), ggml = ggml_avx512_dot(x.data(), y.data(), n);
        ASSERT_EQ(std::memcmp(&ours, &ggml, sizeof ours), 0)
            << "n " << n << (half ? " halves" : " floats") << " rep " << rep << ": " << ours << " vs " << ggml;
      }
}

// The scalar loops against sums in double (they compute the documented quantities), then the
// AVX2 and AVX-512 loops against the scalar ones, bit for bit: float and half keys, spans that
// start and end anywhere in a tile.
TEST(Attention, ScoresFromKeyTilesMatchTheScalarChainsBitForBit) {
  uint32_t seed = 1;
  for (const Shape& sh : shapes())
    for (int64_t begin : {0, 3, 16, 21})
      for (bool half : {false, true}) {
        const Tiles tiles(sh.hd, begin + sh.len, ++seed, half);
        const int64_t s_stride = sh.len + 3;  // padding: nothing past len is written
        auto q = random_floats(sh.n_q * sh.hd, ++seed);
        if (half)  // half keys come with half queries
          for (auto& x : q) x = fp16_to_fp32(fp32_to_fp16(x));
        const float scale = 0.088388f;
        std::vector<float> ref(sh.n_q * s_stride, -7.f);
        detail::attention_scores_scalar(q.data(), sh.n_q, sh.hd, tiles.view(half), begin, sh.len, scale, ref.data(),
                                        s_stride);
        for (int h = 0; h < sh.n_q; ++h)
          for (int64_t j = 0; j < s_stride; ++j) {
            if (j >= sh.len) {
              ASSERT_EQ(ref[h * s_stride + j], -7.f);
              continue;
            }
            double dot = 0;
            for (int d = 0; d < sh.hd; ++d) dot += double(q[h * sh.hd + d]) * tiles.key(begin + j, d);
            ASSERT_NEAR(ref[h * s_stride + j], dot * scale, 1e-4 * (1 + std::fabs(dot)));
          }
        using ScoresFn = void (*)(const float*, int, int, const KeyTiles&, int64_t, int64_t, float, float*, int64_t);
        const struct {
          const char* name;
          bool available;
          ScoresFn fn;
        } vector_loops[] = {{"avx2", detail::cpu_has_avx2(), detail::avx2_attention_scores},
                            {"avx512", detail::cpu_has_avx512(), detail::avx512_attention_scores}};
        for (const auto& loop : vector_loops) {
          if (!loop.available) continue;
          std::vector<float> got(sh.n_q * s_stride, -7.f);
          loop.fn(q.data(), sh.n_q, sh.hd, tiles.view(half), begin, sh.len, scale, got.data(), s_stride);
          for (size_t i = 0; i < got.size(); ++i)
            ASSERT_TRUE(same_bits(got[i], ref[i]))
                << loop.name << " n_q " << sh.n_q << " hd " << sh.hd << " len " << sh.len << " begin " << begin
                << (half ? " f16" : "") << " at " << i << ": " << got[i] << " vs " << ref[i];
        }
      }
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "scalar loops checked; no AVX-512 on this CPU";
}

TEST(Attention, ValuesMatchTheScalarChainsBitForBit) {
  uint32_t seed = 1000;
  for (const Shape& sh : shapes()) {
    const int64_t p_stride = sh.len + 2, v_stride = sh.hd + 16;
    const auto p = random_floats(sh.n_q * p_stride, ++seed);
    const auto v = random_floats(sh.len * v_stride, ++seed);
    const auto o0 = random_floats(sh.n_q * sh.hd + 16, ++seed);  // accumulated into; 16 past the end untouched
    std::vector<float> ref = o0;
    detail::attention_values_scalar(p.data(), p_stride, sh.n_q, sh.len, v.data(), v_stride, sh.hd, ref.data());
    for (int h = 0; h < sh.n_q; ++h)
      for (int d = 0; d < sh.hd; ++d) {
        double sum = o0[h * sh.hd + d];
        for (int64_t j = 0; j < sh.len; ++j) sum += double(p[h * p_stride + j]) * v[j * v_stride + d];
        ASSERT_NEAR(ref[h * sh.hd + d], sum, 1e-3 * (1 + std::fabs(sum)));
      }
    for (size_t i = sh.n_q * sh.hd; i < ref.size(); ++i) ASSERT_TRUE(same_bits(ref[i], o0[i]));
    if (!detail::cpu_has_avx512()) continue;
    std::vector<float> got = o0;
    detail::avx512_attention_values(p.data(), p_stride, sh.n_q, sh.len, v.data(), v_stride, sh.hd, got.data());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_TRUE(same_bits(got[i], ref[i])) << "n_q " << sh.n_q << " hd " << sh.hd << " len " << sh.len
                                             << " at " << i << ": " << got[i] << " vs " << ref[i];
  }
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "scalar loops checked; no AVX-512 on this CPU";
}

std::vector<uint16_t> to_halves(const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = fp32_to_fp16(x[i]);
  return h;
}

// Half-precision values read in place give what their float widening gives.
TEST(Attention, HalfValuesInPlaceMatchTheirFloatWideningBitForBit) {
  uint32_t seed = 2000;
  for (const Shape& sh : shapes()) {
    const int64_t p_stride = sh.len + 2, v_stride = sh.hd + 16;
    const auto p = random_floats(sh.n_q * p_stride, ++seed);
    const auto vh = to_halves(random_floats(sh.len * v_stride, ++seed));
    std::vector<float> vf(vh.size());
    for (size_t i = 0; i < vh.size(); ++i) vf[i] = fp16_to_fp32(vh[i]);
    const auto o0 = random_floats(sh.n_q * sh.hd + 16, ++seed);
    std::vector<float> ref = o0, scalar = o0;
    detail::attention_values_scalar(p.data(), p_stride, sh.n_q, sh.len, vf.data(), v_stride, sh.hd, ref.data());
    detail::attention_values_f16_scalar(p.data(), p_stride, sh.n_q, sh.len, vh.data(), v_stride, sh.hd, scalar.data());
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_TRUE(same_bits(scalar[i], ref[i])) << "scalar at " << i;
    if (!detail::cpu_has_avx512()) continue;
    std::vector<float> got = o0;
    detail::avx512_attention_values_f16(p.data(), p_stride, sh.n_q, sh.len, vh.data(), v_stride, sh.hd, got.data());
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_TRUE(same_bits(got[i], ref[i])) << "n_q " << sh.n_q << " hd " << sh.hd << " len " << sh.len << " at " << i;
  }
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "scalar loops checked; no AVX-512 on this CPU";
}

// Weights that are halves too (an F16 cache rounds them): the fused AVX-512 loop gives the scalar
// loop's numbers bit for bit.
TEST(Attention, HalfWeightsAndValuesFusedMatchTheScalarChainsBitForBit) {
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  uint32_t seed = 2500;
  for (const Shape& sh : shapes()) {
    const int64_t p_stride = sh.len + 2, v_stride = sh.hd + 16;
    auto p = random_floats(sh.n_q * p_stride, ++seed);
    std::mt19937 rng(seed);
    for (auto& w : p) {
      w = std::fabs(w) * (rng() % 40 == 0 ? 1e-6f : 0.3f);  // softmax weights, some subnormal halves
      w = fp16_to_fp32(fp32_to_fp16(w));
    }
    auto vf = random_floats(sh.len * v_stride, ++seed);
    for (auto& x : vf)
      if (rng() % 40 == 0) x *= 3e4f;
    const auto vh = to_halves(vf);
    const auto o0 = random_floats(sh.n_q * sh.hd + 16, ++seed);
    std::vector<float> ref = o0, got = o0;
    detail::attention_values_f16_scalar(p.data(), p_stride, sh.n_q, sh.len, vh.data(), v_stride, sh.hd, ref.data());
    detail::avx512_attention_values_f16(p.data(), p_stride, sh.n_q, sh.len, vh.data(), v_stride, sh.hd, got.data(), true);
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_TRUE(same_bits(got[i], ref[i])) << "n_q " << sh.n_q << " hd " << sh.hd << " len " << sh.len << " at " << i
                                             << ": " << got[i] << " vs " << ref[i];
  }
}

}  // namespace
}  // namespace endless::kernels
