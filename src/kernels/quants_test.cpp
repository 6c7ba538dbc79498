// Layouts, quantizers and dequantizers, and the scalar reference dot products.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

namespace endless::kernels {
namespace {

std::vector<float> random_floats(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& f : v) f = dist(rng);
  return v;
}

std::vector<uint8_t> quantized(TensorType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_size(t, static_cast<int64_t>(x.size())));
  quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantized(TensorType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(t, q.data(), y.data(), n);
  return y;
}

const TensorType kWeightTypes[] = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1,
    TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K,
    TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K,
};

TEST(Layouts, BlockSizesMatchTheTypeTable) {
  EXPECT_EQ(sizeof(block_q4_0), info(TensorType::Q4_0).type_size);
  EXPECT_EQ(sizeof(block_q4_1), info(TensorType::Q4_1).type_size);
  EXPECT_EQ(sizeof(block_q5_0), info(TensorType::Q5_0).type_size);
  EXPECT_EQ(sizeof(block_q5_1), info(TensorType::Q5_1).type_size);
  EXPECT_EQ(sizeof(block_q8_0), info(TensorType::Q8_0).type_size);
  EXPECT_EQ(sizeof(block_q8_1), info(TensorType::Q8_1).type_size);
  EXPECT_EQ(sizeof(block_q2_K), info(TensorType::Q2_K).type_size);
  EXPECT_EQ(sizeof(block_q3_K), info(TensorType::Q3_K).type_size);
  EXPECT_EQ(sizeof(block_q4_K), info(TensorType::Q4_K).type_size);
  EXPECT_EQ(sizeof(block_q5_K), info(TensorType::Q5_K).type_size);
  EXPECT_EQ(sizeof(block_q6_K), info(TensorType::Q6_K).type_size);
  EXPECT_EQ(sizeof(block_q8_K), info(TensorType::Q8_K).type_size);
  EXPECT_EQ(offsetof(block_q4_K, qs), 16u);
  EXPECT_EQ(offsetof(block_q6_K, d), 208u);
  EXPECT_EQ(offsetof(block_q2_K, d), 80u);
  EXPECT_EQ(offsetof(block_q3_K, d), 108u);
}

TEST(Capabilities, VecDotTypesAreGgmls) {
  EXPECT_EQ(vec_dot_type(TensorType::F32), TensorType::F32);
  EXPECT_EQ(vec_dot_type(TensorType::F16), TensorType::F16);
  EXPECT_EQ(vec_dot_type(TensorType::BF16), TensorType::BF16);
  EXPECT_EQ(vec_dot_type(TensorType::Q4_0), TensorType::Q8_0);
  EXPECT_EQ(vec_dot_type(TensorType::Q5_0), TensorType::Q8_0);
  EXPECT_EQ(vec_dot_type(TensorType::Q8_0), TensorType::Q8_0);
  EXPECT_EQ(vec_dot_type(TensorType::Q4_1), TensorType::Q8_1);
  EXPECT_EQ(vec_dot_type(TensorType::Q5_1), TensorType::Q8_1);
  for (TensorType t : {TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                       TensorType::Q6_K})
    EXPECT_EQ(vec_dot_type(t), TensorType::Q8_K);
  for (TensorType t : kWeightTypes) {
    EXPECT_TRUE(can_matmul(t)) << type_name(t);
    EXPECT_TRUE(can_dequantize(t)) << type_name(t);
  }
  EXPECT_FALSE(can_matmul(TensorType::IQ2_XXS));
  EXPECT_FALSE(can_dequantize(TensorType::IQ2_XXS));
  EXPECT_THROW(vec_dot_type(TensorType::IQ2_XXS), Error);
}

TEST(Conversions, RejectPartialBlocks) {
  std::vector<float> x(48, 1.0f);
  std::vector<uint8_t> q(1024);
  EXPECT_THROW(quantize_row(TensorType::Q8_0, x.data(), q.data(), 48), Error);
  EXPECT_THROW(dequantize_row(TensorType::Q4_K, q.data(), x.data(), 32), Error);
  EXPECT_THROW(quantize_row(TensorType::IQ2_XXS, x.data(), q.data(), 256), Error);
}

// Largest |dequantize(quantize(x)) - x| relative to the block's largest |x|, per type.
TEST(Conversions, RoundTripErrorIsBoundedPerType) {
  struct Bound {
    TensorType t;
    float max_rel;  // bound on max error / max |x| of a block
  };
  const Bound bounds[] = {
      {TensorType::F32, 0.0f},      {TensorType::F16, 1e-3f},     {TensorType::BF16, 8e-3f},
      {TensorType::Q8_0, 1.0f / 127}, {TensorType::Q8_1, 1.0f / 127}, {TensorType::Q8_K, 1.0f / 127},
      {TensorType::Q4_0, 1.0f / 8},  {TensorType::Q4_1, 1.0f / 15}, {TensorType::Q5_0, 1.0f / 16},
      {TensorType::Q5_1, 1.0f / 31}, {TensorType::Q2_K, 0.5f},     {TensorType::Q3_K, 0.3f},
      {TensorType::Q4_K, 0.15f},     {TensorType::Q5_K, 0.08f},    {TensorType::Q6_K, 0.04f},
  };
  const int64_t n = 4 * 256;
  const auto x = random_floats(n, 7);
  for (const auto& b : bounds) {
    const auto y = dequantized(b.t, quantized(b.t, x), n);
    const int64_t block = std::max<int64_t>(info(b.t).block_size, 32);
    double rms = 0;
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      float amax = 0, err = 0;
      for (int64_t i = i0; i < i0 + block; ++i) {
        amax = std::max(amax, std::fabs(x[i]));
        err = std::max(err, std::fabs(y[i] - x[i]));
        rms += (y[i] - x[i]) * (y[i] - x[i]);
      }
      // Half a step of rounding, plus the half-precision rounding of the scale.
      EXPECT_LE(err, amax * b.max_rel * 1.01f + 1e-6f) << type_name(b.t) << " block " << i0;
    }
    // Finer formats must be more accurate on average: a coarse sanity ordering.
    rms = std::sqrt(rms / n);
    if (b.t == TensorType::Q6_K) {
      EXPECT_LT(rms, 0.02) << "Q6_K";
    }
    if (b.t == TensorType::Q4_K) {
      EXPECT_LT(rms, 0.09) << "Q4_K";
    }
    if (b.t == TensorType::Q8_0) {
      EXPECT_LT(rms, 0.01) << "Q8_0";
    }
  }
}

TEST(Conversions, ZeroRowsStayZero) {
  const std::vector<float> zeros(512, 0.0f);
  for (TensorType t : kWeightTypes) {
    const auto y = dequantized(t, quantized(t, zeros), 512);
    for (float v : y) ASSERT_EQ(v, 0.0f) << type_name(t);
  }
  const auto q8k = quantized(TensorType::Q8_K, zeros);
  const auto* b = reinterpret_cast<const block_q8_K*>(q8k.data());
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b->bsums[j], 0);
}

// Q8_0 activations as ggml's AVX code makes them: d = amax/127 in half precision, values
// round(x * 127/amax) with ties to even.
TEST(ActivationQuantizers, Q8_0MatchesADirectDerivation) {
  auto x = random_floats(96, 3, 2.0f);
  x[5] = 0.0f;
  // An exact tie: with amax = 127, x * 127/amax = x, so 2.5 must round to 2 (roundf gives 3).
  for (int j = 32; j < 64; ++j) x[j] = 0.0f;
  x[32] = 127.0f;
  x[33] = 2.5f;
  x[34] = -3.5f;
  const auto q = quantized(TensorType::Q8_0, x);
  const auto* blocks = reinterpret_cast<const block_q8_0*>(q.data());
  for (int b = 0; b < 3; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    EXPECT_EQ(blocks[b].d, fp32_to_fp16(amax / 127.f));
    const float id = amax ? 127.f / amax : 0.f;
    for (int j = 0; j < 32; ++j)
      EXPECT_EQ(blocks[b].qs[j], static_cast<int8_t>(std::nearbyint(x[32 * b + j] * id)));
  }
  EXPECT_EQ(blocks[1].qs[1], 2);
  EXPECT_EQ(blocks[1].qs[2], -4);
}

// The AVX-512 quantizer (used when that ISA is active) gives the scalar one's bytes: rows of
// every magnitude, with ties, zeros, signs and blocks whose amax is negative.
TEST(ActivationQuantizers, Q8_0IsTheSameOnEveryIsa) {
  const Isa saved = active_isa();
  auto x = random_floats(32 * 64, 7, 1.0f);
  for (int b = 0; b < 64; ++b) {
    const float scale = std::ldexp(1.0f, b % 40 - 20);
    for (int j = 0; j < 32; ++j) x[32 * b + j] *= scale;
  }
  for (int j = 0; j < 32; ++j) x[32 * 3 + j] = 0.0f;                      // all zero
  for (int j = 0; j < 32; ++j) x[32 * 4 + j] = static_cast<float>(j) - 15.5f;  // ties after scaling
  x[32 * 4] = -127.0f;
  for (int j = 0; j < 32; ++j) x[32 * 5 + j] = j % 2 ? 0.5f : -1.5f;
  set_isa(Isa::scalar);
  const auto scalar = quantized(TensorType::Q8_0, x);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (static_cast<int>(isa) > static_cast<int>(best_isa())) continue;
    set_isa(isa);
    EXPECT_EQ(quantized(TensorType::Q8_0, x), scalar) << isa_name(isa);
  }
  set_isa(saved);
}

// Weights are written with ggml's reference Q8_0 quantizer, which rounds ties away from zero.
TEST(WeightQuantizers, Q8_0ReferenceRoundsTiesAwayFromZero) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 1.25f;
  std::vector<uint8_t> q(sizeof(block_q8_0)), a(sizeof(block_q8_0));
  quantize_weights_row(TensorType::Q8_0, x.data(), q.data(), 32);
  quantize_row(TensorType::Q8_0, x.data(), a.data(), 32);
  const auto* wb = reinterpret_cast<const block_q8_0*>(q.data());
  const auto* ab = reinterpret_cast<const block_q8_0*>(a.data());
  EXPECT_EQ(wb->d, fp32_to_fp16(1.0f));
  EXPECT_EQ(wb->qs[0], 127);
  EXPECT_EQ(wb->qs[1], 3);
  EXPECT_EQ(ab->qs[1], 2);
  EXPECT_EQ(wb->qs[2], -4);
  EXPECT_EQ(wb->qs[3], 1);
  // Every other type is written the same way by both entry points.
  const auto y = random_floats(512, 8);
  for (TensorType t : kWeightTypes) {
    if (t == TensorType::Q8_0) continue;
    EXPECT_EQ(quantized(t, y), [&] {
      std::vector<uint8_t> w(row_size(t, 512));
      quantize_weights_row(t, y.data(), w.data(), 512);
      return w;
    }()) << type_name(t);
  }
}

TEST(ActivationQuantizers, Q8_1StoresScaledSum) {
  const auto x = random_floats(64, 4);
  const auto q = quantized(TensorType::Q8_1, x);
  const auto* blocks = reinterpret_cast<const block_q8_1*>(q.data());
  for (int b = 0; b < 2; ++b) {
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += blocks[b].qs[j];
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    EXPECT_EQ(blocks[b].s, fp32_to_fp16(amax / 127.f * static_cast<float>(sum)));
  }
}

// Q8_K: the largest-magnitude element maps to -127 (d is negative when it is positive), ties
// round to even, and bsums hold sums of 16.
TEST(ActivationQuantizers, Q8_KMatchesADirectDerivation) {
  auto x = random_floats(512, 5);
  x[300] = -7.0f;  // the extreme of the second block is negative
  const auto q = quantized(TensorType::Q8_K, x);
  const auto* blocks = reinterpret_cast<const block_q8_K*>(q.data());
  for (int b = 0; b < 2; ++b) {
    float max = 0, amax = 0;
    for (int j = 0; j < 256; ++j)
      if (std::fabs(x[256 * b + j]) > amax) {
        amax = std::fabs(x[256 * b + j]);
        max = x[256 * b + j];
      }
    const float iscale = -127.f / max;
    EXPECT_EQ(blocks[b].d, 1 / iscale);
    for (int j = 0; j < 256; ++j) {
      const int expect = std::min(127, static_cast<int>(std::nearbyint(iscale * x[256 * b + j])));
      ASSERT_EQ(blocks[b].qs[j], expect) << b << " " << j;
    }
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += blocks[b].qs[16 * g + j];
      EXPECT_EQ(blocks[b].bsums[g], sum);
    }
  }
  EXPECT_GT(blocks[1].d, 0.0f);  // max is -7: iscale positive
}

TEST(ActivationQuantizers, NearestIntRoundsHalfToEven) {
  EXPECT_EQ(detail::nearest_int(2.5f), 2);
  EXPECT_EQ(detail::nearest_int(3.5f), 4);
  EXPECT_EQ(detail::nearest_int(-2.5f), -2);
  EXPECT_EQ(detail::nearest_int(-0.4f), 0);
  EXPECT_EQ(detail::nearest_int(126.6f), 127);
}

TEST(Conversions, HalfRowsMatchScalarConversions) {
  auto x = random_floats(37, 9, 100.0f);
  x[3] = 65520.0f;  // rounds to infinity in half precision
  x[4] = 1e-6f;     // subnormal half
  std::vector<uint16_t> h(x.size()), b(x.size());
  fp32_to_fp16_row(x.data(), h.data(), 37);
  fp32_to_bf16_row(x.data(), b.data(), 37);
  std::vector<float> back_h(x.size()), back_b(x.size());
  fp16_to_fp32_row(h.data(), back_h.data(), 37);
  bf16_to_fp32_row(b.data(), back_b.data(), 37);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(h[i], fp32_to_fp16(x[i])) << i;
    EXPECT_EQ(b[i], fp32_to_bf16(x[i])) << i;
    EXPECT_EQ(float_bits(back_h[i]), float_bits(fp16_to_fp32(h[i]))) << i;
    EXPECT_EQ(float_bits(back_b[i]), float_bits(bf16_to_fp32(b[i]))) << i;
  }
}

// The reference dot product of a weight row with converted activations equals the float dot of
// both sides dequantized, up to float rounding.
TEST(RefVecDot, EqualsDotOfDequantizedRows) {
  for (TensorType t : kWeightTypes) {
    const int64_t bs = info(t).block_size;
    for (int64_t n : {bs == 1 ? int64_t{32} : bs, 8 * std::max<int64_t>(bs, 32)}) {
      const auto w = random_floats(n, 11 + static_cast<uint32_t>(n));
      const auto x = random_floats(n, 12 + static_cast<uint32_t>(n));
      const TensorType at = vec_dot_type(t);
      const auto wq = quantized(t, w);
      const auto xq = quantized(at, x);
      const auto wd = dequantized(t, wq, n);
      const auto xd = dequantized(at, xq, n);
      double expect = 0, magnitude = 0;
      for (int64_t i = 0; i < n; ++i) {
        expect += static_cast<double>(wd[i]) * xd[i];
        magnitude += std::fabs(static_cast<double>(wd[i]) * xd[i]);
      }
      const float got = ref::vec_dot(t, n, wq.data(), xq.data());
      // Q4_1/Q5_1 use the activations' half-precision block sums for the min term.
      const double tol = (t == TensorType::Q4_1 || t == TensorType::Q5_1) ? 2e-3 : 1e-5;
      EXPECT_NEAR(got, expect, tol * magnitude + 1e-6) << type_name(t) << " n=" << n;
    }
  }
}

TEST(RefVecDot, WeightQuantizationKeepsDotsClose) {
  // End to end: float dot vs quantized weights & activations, a loose sanity check of scale.
  const int64_t n = 1024;
  const auto w = random_floats(n, 21);
  const auto x = random_floats(n, 22);
  double exact = 0, magnitude = 0;
  for (int64_t i = 0; i < n; ++i) {
    exact += static_cast<double>(w[i]) * x[i];
    magnitude += std::fabs(static_cast<double>(w[i]) * x[i]);
  }
  for (TensorType t : kWeightTypes) {
    const auto wq = quantized(t, w);
    const auto xq = quantized(vec_dot_type(t), x);
    const float got = ref::vec_dot(t, n, wq.data(), xq.data());
    const double tol = t == TensorType::Q2_K ? 0.2 : t == TensorType::Q3_K ? 0.12 : 0.06;
    EXPECT_NEAR(got, exact, tol * magnitude) << type_name(t);
  }
}

TEST(Matmul, MatchesRowByRowDots) {
  const int64_t n_in = 512, n_out = 37, n_tokens = 5;
  const auto x = random_floats(n_in * n_tokens, 31);
  for (TensorType t : kWeightTypes) {
    const auto wf = random_floats(n_in * n_out, 32);
    std::vector<uint8_t> w(row_size(t, n_in) * n_out);
    for (int64_t o = 0; o < n_out; ++o)
      quantize_row(t, wf.data() + o * n_in, w.data() + o * row_size(t, n_in), n_in);
    std::vector<float> y(n_out * n_tokens, -1.0f);
    matmul(t, w.data(), n_in, n_out, x.data(), n_tokens, y.data());
    // A product of several tokens uses batch_dot_fn's arithmetic (ggml's for such products), a
    // product of one token vec_dot's.
    const VecDotFn batch = batch_dot_fn(t);
    std::vector<uint8_t> act(row_size(vec_dot_type(t), n_in));
    std::vector<float> one(n_out, -1.0f);
    for (int64_t tok = 0; tok < n_tokens; ++tok) {
      quantize_row(vec_dot_type(t), x.data() + tok * n_in, act.data(), n_in);
      matmul(t, w.data(), n_in, n_out, x.data() + tok * n_in, 1, one.data());
      for (int64_t o = 0; o < n_out; ++o) {
        const uint8_t* row = w.data() + o * row_size(t, n_in);
        ASSERT_EQ(y[tok * n_out + o], batch(n_in, row, act.data()))
            << type_name(t) << " token " << tok << " row " << o;
        ASSERT_EQ(one[o], vec_dot(t, n_in, row, act.data())) << type_name(t) << " row " << o;
      }
    }
  }
}

TEST(Matmul, RejectsBadShapesAndTypes) {
  std::vector<float> x(64), y(4);
  std::vector<uint8_t> w(4096);
  EXPECT_THROW(matmul(TensorType::Q4_K, w.data(), 64, 1, x.data(), 1, y.data()), Error);
  EXPECT_THROW(matmul(TensorType::IQ2_XXS, w.data(), 256, 1, x.data(), 1, y.data()), Error);
}

}  // namespace
}  // namespace endless::kernels
