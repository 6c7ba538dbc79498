#include "kernels/attention.h"

#include <gtest/gtest.h>

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
    for (int hd : {8, 16, 24, 64, 128, 256})
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

// The scalar loops against sums in double (they compute the documented quantities), then the
// AVX-512 loops against the scalar ones, bit for bit.
TEST(Attention, ScoresMatchTheScalarChainsBitForBit) {
  uint32_t seed = 1;
  for (const Shape& sh : shapes()) {
    const int64_t kt_stride = sh.len + 5, s_stride = sh.len + 3;  // padding: nothing past len is read or written
    const auto q = random_floats(sh.n_q * sh.hd, ++seed);
    const auto kt = random_floats(sh.hd * kt_stride, ++seed);
    const float scale = 0.125f;
    std::vector<float> ref(sh.n_q * s_stride, -7.f);
    detail::attention_scores_scalar(q.data(), sh.n_q, sh.hd, kt.data(), kt_stride, sh.len, scale, ref.data(), s_stride);
    for (int h = 0; h < sh.n_q; ++h)
      for (int64_t j = 0; j < s_stride; ++j) {
        if (j >= sh.len) {
          ASSERT_EQ(ref[h * s_stride + j], -7.f);
          continue;
        }
        double dot = 0;
        for (int d = 0; d < sh.hd; ++d) dot += double(q[h * sh.hd + d]) * kt[d * kt_stride + j];
        ASSERT_NEAR(ref[h * s_stride + j], dot * scale, 1e-4 * (1 + std::fabs(dot)));
      }
    if (!detail::cpu_has_avx512()) continue;
    std::vector<float> got(sh.n_q * s_stride, -7.f);
    detail::avx512_attention_scores(q.data(), sh.n_q, sh.hd, kt.data(), kt_stride, sh.len, scale, got.data(), s_stride);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_TRUE(same_bits(got[i], ref[i])) << "n_q " << sh.n_q << " hd " << sh.hd << " len " << sh.len
                                             << " at " << i << ": " << got[i] << " vs " << ref[i];
  }
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "scalar loops checked; no AVX-512 on this CPU";
}

// Half-precision inputs (an F16 cache): the AVX-512 loop's fused multiply-adds in double give the
// scalar loop's numbers bit for bit, every shape, including extreme halves.
TEST(Attention, ScoresOfHalvesMatchTheScalarChainsBitForBit) {
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  auto halves = [](std::vector<float> v, uint32_t seed) {
    std::mt19937 rng(seed);
    for (auto& x : v) {
      if (rng() % 50 == 0) x *= 3e4f;    // near the top of the half range
      if (rng() % 50 == 1) x *= 1e-6f;   // subnormal halves
      x = fp16_to_fp32(fp32_to_fp16(x));
    }
    return v;
  };
  uint32_t seed = 500;
  for (const Shape& sh : shapes()) {
    const int64_t kt_stride = sh.len + 5, s_stride = sh.len + 3;
    const auto q = halves(random_floats(sh.n_q * sh.hd, ++seed), seed);
    const auto kt = halves(random_floats(sh.hd * kt_stride, ++seed), seed);
    const float scale = 0.088388f;
    std::vector<float> ref(sh.n_q * s_stride, -7.f), got(sh.n_q * s_stride, -7.f);
    detail::attention_scores_scalar(q.data(), sh.n_q, sh.hd, kt.data(), kt_stride, sh.len, scale, ref.data(), s_stride);
    detail::avx512_attention_scores(q.data(), sh.n_q, sh.hd, kt.data(), kt_stride, sh.len, scale, got.data(), s_stride,
                                    true);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_TRUE(same_bits(got[i], ref[i])) << "n_q " << sh.n_q << " hd " << sh.hd << " len " << sh.len
                                             << " at " << i << ": " << got[i] << " vs " << ref[i];
  }
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

TEST(Attention, TransposeToFloatColumns) {
  uint32_t seed = 3000;
  for (int64_t n_rows : {1, 5, 16, 17, 40, 300})
    for (int n_cols : {8, 16, 20, 64, 512})
      for (bool f16 : {false, true}) {
        const int64_t stride = n_rows + 7;
        const auto rf = random_floats(n_rows * n_cols, ++seed);
        const auto rh = to_halves(rf);
        const void* rows = f16 ? static_cast<const void*>(rh.data()) : static_cast<const void*>(rf.data());
        std::vector<float> want(n_cols * stride, -9.f);
        for (int64_t r = 0; r < n_rows; ++r)
          for (int c = 0; c < n_cols; ++c)
            want[c * stride + r] = f16 ? fp16_to_fp32(rh[r * n_cols + c]) : rf[r * n_cols + c];
        std::vector<float> scalar(want.size(), -9.f);
        detail::transpose_to_f32_scalar(rows, f16, n_rows, n_cols, scalar.data(), stride);
        ASSERT_EQ(scalar, want) << n_rows << " x " << n_cols << (f16 ? " f16" : " f32");
        if (!detail::cpu_has_avx512()) continue;
        std::vector<float> got(want.size(), -9.f);
        detail::avx512_transpose_to_f32(rows, f16, n_rows, n_cols, got.data(), stride);
        ASSERT_EQ(got, want) << n_rows << " x " << n_cols << (f16 ? " f16" : " f32");
      }
  if (!detail::cpu_has_avx512()) GTEST_SKIP() << "scalar transposition checked; no AVX-512 on this CPU";
}

}  // namespace
}  // namespace endless::kernels
