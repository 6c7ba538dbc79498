// The SIMD dot products against the scalar reference, on every instruction set this CPU has.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

namespace endless::kernels {
namespace {

const TensorType kWeightTypes[] = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1,
    TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0, TensorType::Q2_K, TensorType::Q3_K,
    TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K,
};

std::vector<Isa> supported_isas() {
  std::vector<Isa> out = {Isa::scalar};
  if (best_isa() == Isa::avx2 || best_isa() == Isa::avx512) out.push_back(Isa::avx2);
  if (best_isa() == Isa::avx512) out.push_back(Isa::avx512);
  return out;
}

// Restores the instruction set a test changed.
class SimdTest : public ::testing::Test {
 protected:
  void TearDown() override { set_isa(saved_); }
  Isa saved_ = active_isa();
};

// --- rows whose dot product is computed exactly in any order ---------------------------------
// Scales are powers of two and values small integers, so every partial sum is an integer below
// 2^24 and float addition is exact whatever the order: any difference is an integer-path bug.

void put_half(uint8_t* p, float v) {
  const uint16_t h = fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

std::vector<uint8_t> exact_weights(TensorType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(row_size(t, n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
  std::uniform_int_distribution<int> small(-16, 16);
  const int64_t bs = info(t).block_size;
  const size_t ts = info(t).type_size;
  for (int64_t blk = 0; blk < n / bs; ++blk) {
    uint8_t* p = row.data() + blk * ts;
    switch (t) {
      case TensorType::F32: {
        const float v = static_cast<float>(small(rng));
        std::memcpy(p, &v, 4);
        break;
      }
      case TensorType::F16: put_half(p, static_cast<float>(small(rng))); break;
      case TensorType::BF16: {
        const uint16_t h = fp32_to_bf16(static_cast<float>(small(rng)));
        std::memcpy(p, &h, 2);
        break;
      }
      case TensorType::Q4_0: case TensorType::Q5_0: case TensorType::Q8_0:
        put_half(p, 1.0f);
        break;
      case TensorType::Q4_1: put_half(p, 1.0f); put_half(p + 2, -8.0f); break;
      case TensorType::Q5_1: put_half(p, 0.5f); put_half(p + 2, -16.0f); break;
      case TensorType::Q2_K: {
        auto* b = reinterpret_cast<block_q2_K*>(p);
        put_half(reinterpret_cast<uint8_t*>(&b->d), 1.0f);
        put_half(reinterpret_cast<uint8_t*>(&b->dmin), 2.0f);
        break;
      }
      case TensorType::Q3_K: put_half(reinterpret_cast<uint8_t*>(&reinterpret_cast<block_q3_K*>(p)->d), 1.0f); break;
      case TensorType::Q4_K: case TensorType::Q5_K: {
        // Scales and mins kept below 8 so the sums stay below 2^24.
        for (int j = 0; j < 8; ++j) p[4 + j] &= 0x07;
        for (int j = 8; j < 12; ++j) p[4 + j] &= 0x77;
        put_half(p, 1.0f);
        put_half(p + 2, 1.0f);
        break;
      }
      case TensorType::Q6_K: {
        auto* b = reinterpret_cast<block_q6_K*>(p);
        for (auto& s : b->scales) s = static_cast<int8_t>(std::uniform_int_distribution<int>(-7, 7)(rng));
        put_half(reinterpret_cast<uint8_t*>(&b->d), 1.0f);
        break;
      }
      default: ADD_FAILURE() << "no generator for " << type_name(t);
    }
  }
  return row;
}

std::vector<uint8_t> exact_activations(TensorType t, int64_t n, std::mt19937& rng, int qmax = 127) {
  std::vector<uint8_t> row(row_size(t, n));
  std::uniform_int_distribution<int> q(-qmax, qmax);
  std::uniform_int_distribution<int> small(-16, 16);
  switch (t) {
    case TensorType::F32: {
      auto* f = reinterpret_cast<float*>(row.data());
      for (int64_t i = 0; i < n; ++i) f[i] = static_cast<float>(small(rng));
      break;
    }
    case TensorType::F16: case TensorType::BF16: {
      auto* h = reinterpret_cast<uint16_t*>(row.data());
      for (int64_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(small(rng));
        h[i] = t == TensorType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
      }
      break;
    }
    case TensorType::Q8_0: {
      auto* b = reinterpret_cast<block_q8_0*>(row.data());
      for (int64_t i = 0; i < n / 32; ++i) {
        b[i].d = fp32_to_fp16(0.5f);
        for (auto& v : b[i].qs) v = static_cast<int8_t>(q(rng));
      }
      break;
    }
    case TensorType::Q8_1: {
      auto* b = reinterpret_cast<block_q8_1*>(row.data());
      for (int64_t i = 0; i < n / 32; ++i) {
        b[i].d = fp32_to_fp16(0.5f);
        int sum = 0;
        for (auto& v : b[i].qs) sum += v = static_cast<int8_t>(q(rng));
        b[i].s = fp32_to_fp16(0.5f * sum);
      }
      break;
    }
    case TensorType::Q8_K: {
      auto* b = reinterpret_cast<block_q8_K*>(row.data());
      for (int64_t i = 0; i < n / 256; ++i) {
        b[i].d = 0.5f;
        for (auto& v : b[i].qs) v = static_cast<int8_t>(q(rng));
        for (int g = 0; g < 16; ++g) {
          int sum = 0;
          for (int j = 0; j < 16; ++j) sum += b[i].qs[16 * g + j];
          b[i].bsums[g] = static_cast<int16_t>(sum);
        }
      }
      break;
    }
    default: ADD_FAILURE() << "no generator for " << type_name(t);
  }
  return row;
}

struct Exact {
  double value;
  double magnitude;  // sum of |terms|
};

Exact exact_dot(TensorType t, int64_t n, const std::vector<uint8_t>& w, const std::vector<uint8_t>& a) {
  std::vector<float> wd(static_cast<size_t>(n)), ad(static_cast<size_t>(n));
  dequantize_row(t, w.data(), wd.data(), n);
  dequantize_row(vec_dot_type(t), a.data(), ad.data(), n);
  Exact e{0, 0};
  for (int64_t i = 0; i < n; ++i) {
    e.value += static_cast<double>(wd[i]) * ad[i];
    e.magnitude += std::fabs(static_cast<double>(wd[i]) * ad[i]);
  }
  return e;
}

TEST_F(SimdTest, IntegerPartsAreExactOnEveryIsa) {
  std::mt19937 rng(1234);
  for (TensorType t : kWeightTypes) {
    const int64_t bs = info(t).block_size;
    for (int64_t n : {std::max<int64_t>(bs, 32), 2 * std::max<int64_t>(bs, 256)}) {
      for (int rep = 0; rep < 4; ++rep) {
        const auto w = exact_weights(t, n, rng);
        const auto a = exact_activations(vec_dot_type(t), n, rng);
        const Exact e = exact_dot(t, n, w, a);
        ASSERT_LT(e.magnitude, 16777216.0) << type_name(t) << ": test data too large to be exact";
        EXPECT_EQ(ref::vec_dot(t, n, w.data(), a.data()), static_cast<float>(e.value))
            << "ref " << type_name(t) << " n=" << n;
        for (Isa isa : supported_isas()) {
          set_isa(isa);
          EXPECT_EQ(vec_dot(t, n, w.data(), a.data()), static_cast<float>(e.value))
              << isa_name(isa) << " " << type_name(t) << " n=" << n;
        }
      }
    }
  }
}

// Extreme values: every product at the largest magnitude the formats allow, all of one sign, so
// any 16-bit saturation in the SIMD paths would show.
TEST_F(SimdTest, ExtremeValuesDoNotSaturate) {
  const int64_t n = 64;
  std::vector<uint8_t> w(row_size(TensorType::Q8_0, n)), a(row_size(TensorType::Q8_0, n));
  auto* wb = reinterpret_cast<block_q8_0*>(w.data());
  auto* ab = reinterpret_cast<block_q8_0*>(a.data());
  for (int sign : {1, -1}) {
    for (int i = 0; i < 2; ++i) {
      wb[i].d = ab[i].d = fp32_to_fp16(1.0f);
      for (int j = 0; j < 32; ++j) {
        wb[i].qs[j] = static_cast<int8_t>(127 * sign);
        ab[i].qs[j] = 127;
      }
    }
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      EXPECT_EQ(vec_dot(TensorType::Q8_0, n, w.data(), a.data()), sign * 127.0f * 127 * 64)
          << isa_name(isa);
    }
  }
  // Q6_K at its extremes: values -32 / 31 with scale 127 against +-127.
  std::vector<uint8_t> w6(sizeof(block_q6_K)), a8(sizeof(block_q8_K));
  auto* b6 = reinterpret_cast<block_q6_K*>(w6.data());
  auto* b8 = reinterpret_cast<block_q8_K*>(a8.data());
  for (uint8_t fill : {uint8_t{0x00}, uint8_t{0xFF}}) {
    std::memset(b6->ql, fill, sizeof b6->ql);
    std::memset(b6->qh, fill, sizeof b6->qh);
    for (auto& s : b6->scales) s = 127;
    b6->d = fp32_to_fp16(1.0f);
    b8->d = 1.0f;
    for (auto& q : b8->qs) q = -127;
    for (auto& s : b8->bsums) s = -127 * 16;
    const float expect = (fill ? 31.0f : -32.0f) * -127 * 127 * 256;
    EXPECT_EQ(ref::vec_dot(TensorType::Q6_K, 256, w6.data(), a8.data()), expect);
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      EXPECT_EQ(vec_dot(TensorType::Q6_K, 256, w6.data(), a8.data()), expect) << isa_name(isa);
    }
  }
}

// Realistic data: quantized normal floats. Fast and reference sums differ only by float rounding.
TEST_F(SimdTest, FastPathsMatchReferenceOnQuantizedData) {
  std::mt19937 rng(99);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (TensorType t : kWeightTypes) {
    const int64_t bs = info(t).block_size;
    for (int64_t n : {bs, 3 * std::max<int64_t>(bs, 32), int64_t{4096}}) {
      if (n % bs) continue;
      std::vector<float> wf(static_cast<size_t>(n)), xf(static_cast<size_t>(n));
      for (auto& v : wf) v = dist(rng);
      for (auto& v : xf) v = dist(rng);
      std::vector<uint8_t> w(row_size(t, n)), a(row_size(vec_dot_type(t), n));
      quantize_row(t, wf.data(), w.data(), n);
      quantize_row(vec_dot_type(t), xf.data(), a.data(), n);
      const Exact e = exact_dot(t, n, w, a);
      const float ref = ref::vec_dot(t, n, w.data(), a.data());
      for (Isa isa : supported_isas()) {
        set_isa(isa);
        EXPECT_NEAR(vec_dot(t, n, w.data(), a.data()), ref, 1e-5 * e.magnitude + 1e-7)
            << isa_name(isa) << " " << type_name(t) << " n=" << n;
      }
    }
  }
}

// Float rows of any length: the SIMD loops' tails.
TEST_F(SimdTest, FloatRowsOfOddLengths) {
  std::mt19937 rng(5);
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
    for (int64_t n : {1, 7, 8, 9, 31, 33, 63, 64, 65, 100, 257, 1000}) {
      const auto w = exact_weights(t, n, rng);
      const auto a = exact_activations(t, n, rng);
      const Exact e = exact_dot(t, n, w, a);
      EXPECT_EQ(ref::vec_dot(t, n, w.data(), a.data()), static_cast<float>(e.value));
      for (Isa isa : supported_isas()) {
        set_isa(isa);
        EXPECT_EQ(vec_dot(t, n, w.data(), a.data()), static_cast<float>(e.value))
            << isa_name(isa) << " " << type_name(t) << " n=" << n;
      }
    }
  }
}

TEST_F(SimdTest, IsaSelection) {
  EXPECT_EQ(parse_isa("scalar"), Isa::scalar);
  EXPECT_EQ(parse_isa("avx2"), Isa::avx2);
  EXPECT_EQ(parse_isa("avx512"), Isa::avx512);
  EXPECT_THROW(parse_isa("neon"), Error);
  set_isa(Isa::scalar);
  EXPECT_EQ(active_isa(), Isa::scalar);
  EXPECT_EQ(vec_dot_fn(TensorType::Q4_K), ref::vec_dot_fn(TensorType::Q4_K));
  set_isa(best_isa());
  EXPECT_EQ(active_isa(), best_isa());
  EXPECT_EQ(vec_dot_fn(TensorType::IQ2_XXS), nullptr);
  EXPECT_THROW(vec_dot(TensorType::IQ2_XXS, 256, nullptr, nullptr), Error);
}

// matmul under each instruction set equals the per-row dots of that set; all sets agree within
// rounding.
// Quantized matrices follow llama.cpp's choice of arithmetic (kernels.h: by_block): Q4_0 row
// counts that are a multiple of 8 (which it repacks) take the by-block order, others vec_dot's;
// Q8_0 row counts that are a multiple of 32 take it where the CPU has AMX (its AMX backend takes
// them), others and other CPUs vec_dot's. The two really differ in rounding.
TEST_F(SimdTest, RowCountAndCpuChooseTheOrder) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t n_in = 1024;
  std::vector<float> x(n_in), wf(n_in * 32);
  for (auto& v : x) v = dist(rng);
  for (auto& v : wf) v = dist(rng);
  for (bool amx_cpu : {false, true}) {
    const detail::ScopedAmxArithmetic amx(amx_cpu);
    EXPECT_TRUE(by_block(TensorType::Q4_0, 16));
    EXPECT_FALSE(by_block(TensorType::Q4_0, 12));
    EXPECT_EQ(by_block(TensorType::Q8_0, 32), amx_cpu);
    EXPECT_EQ(by_block(TensorType::Q8_0, 64), amx_cpu);
    EXPECT_FALSE(by_block(TensorType::Q8_0, 16));
    EXPECT_EQ(by_block(TensorType::Q4_K, 32), amx_cpu);
    EXPECT_FALSE(by_block(TensorType::Q4_K, 48));
    EXPECT_EQ(by_block(TensorType::Q6_K, 64), amx_cpu);
    EXPECT_FALSE(by_block(TensorType::Q5_K, 32));
    EXPECT_EQ(by_block_dot_fn(TensorType::Q5_K), nullptr);
    // Q4_0: 16 rows by block, 12 not; Q8_0 and Q4_K: 32 rows by block on an AMX CPU, 24 not.
    for (auto [t, whole, part] : {std::tuple{TensorType::Q4_0, 16, 12}, std::tuple{TensorType::Q8_0, 32, 24},
                                  std::tuple{TensorType::Q4_K, 32, 24}, std::tuple{TensorType::Q6_K, 32, 24}}) {
      const size_t rs = row_size(t, n_in);
      std::vector<uint8_t> w(rs * whole), act(activations_size(t, n_in, 1));
      for (int64_t o = 0; o < whole; ++o) quantize_row(t, wf.data() + o * n_in, w.data() + o * rs, n_in);
      convert_activations(t, x.data(), n_in, 1, act.data());
      const bool blocks = t == TensorType::Q4_0 || amx_cpu;
      for (Isa isa : supported_isas()) {
        set_isa(isa);
        std::vector<float> y_whole(whole), y_part(part);
        matmul_rows(t, w.data(), n_in, whole, act.data(), 1, y_whole.data(), 0, whole);
        matmul_rows(t, w.data(), n_in, part, act.data(), 1, y_part.data(), 0, part);
        int differ = 0;
        for (int64_t o = 0; o < part; ++o) {
          const uint8_t* row = w.data() + o * rs;
          const float in_blocks = by_block_dot_fn(t)(n_in, row, act.data());
          const float ggml = vec_dot(t, n_in, row, act.data());
          EXPECT_EQ(y_whole[o], blocks ? in_blocks : ggml) << type_name(t) << " " << isa_name(isa) << " row " << o;
          EXPECT_EQ(y_part[o], ggml) << type_name(t) << " " << isa_name(isa) << " row " << o;
          EXPECT_NEAR(in_blocks, ggml, 1e-4 * (1 + std::fabs(ggml)));
          differ += in_blocks != ggml;
        }
        EXPECT_GT(differ, 0) << type_name(t) << " " << isa_name(isa);
      }
    }
  }
}

TEST_F(SimdTest, MatmulAgreesAcrossIsas) {
  std::mt19937 rng(77);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t n_in = 512, n_out = 40, n_tokens = 35;
  std::vector<float> x(static_cast<size_t>(n_in * n_tokens));
  for (auto& v : x) v = dist(rng);
  for (TensorType t : kWeightTypes) {
    std::vector<float> wf(static_cast<size_t>(n_in * n_out));
    for (auto& v : wf) v = dist(rng);
    std::vector<uint8_t> w(row_size(t, n_in) * n_out);
    for (int64_t o = 0; o < n_out; ++o)
      quantize_row(t, wf.data() + o * n_in, w.data() + o * row_size(t, n_in), n_in);
    set_isa(Isa::scalar);
    std::vector<float> y_ref(static_cast<size_t>(n_out * n_tokens));
    matmul(t, w.data(), n_in, n_out, x.data(), n_tokens, y_ref.data());
    std::vector<uint8_t> act(activations_size(t, n_in, n_tokens));
    convert_activations(t, x.data(), n_in, n_tokens, act.data());
    const size_t act_row = row_size(vec_dot_type(t), n_in);
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      std::vector<float> y(static_cast<size_t>(n_out * n_tokens));
      matmul(t, w.data(), n_in, n_out, x.data(), n_tokens, y.data());
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_NEAR(y[i], y_ref[i], 1e-4 * (1 + std::fabs(y_ref[i])))
            << isa_name(isa) << " " << type_name(t) << " at " << i;
      // Each token of a batch gets exactly batch_dot_fn's result, however the kernels group
      // tokens; a product of one token gets vec_dot's; Q4_0 of 40 rows gets the by-block order
      // either way.
      const bool blocks = by_block(t, n_out);
      ASSERT_EQ(blocks, t == TensorType::Q4_0);
      const VecDotFn batch = blocks ? by_block_dot_fn(t) : batch_dot_fn(t);
      const VecDotFn one = blocks ? by_block_dot_fn(t) : vec_dot_fn(t);
      std::vector<float> single(n_out);
      for (int64_t tok = 0; tok < n_tokens; ++tok) {
        matmul(t, w.data(), n_in, n_out, x.data() + tok * n_in, 1, single.data());
        for (int64_t o = 0; o < n_out; ++o) {
          const uint8_t* row = w.data() + o * row_size(t, n_in);
          ASSERT_EQ(y[tok * n_out + o], batch(n_in, row, act.data() + tok * act_row))
              << isa_name(isa) << " " << type_name(t) << " token " << tok << " row " << o;
          ASSERT_EQ(single[o], one(n_in, row, act.data() + tok * act_row))
              << isa_name(isa) << " " << type_name(t) << " token " << tok << " row " << o;
        }
      }
      // A range of rows, as a worker thread would compute it, fills exactly that range.
      std::vector<float> part(y.size(), -7.0f);
      matmul_rows(t, w.data(), n_in, n_out, act.data(), n_tokens, part.data(), 3, 17);
      for (int64_t tok = 0; tok < n_tokens; ++tok)
        for (int64_t o = 0; o < n_out; ++o) {
          const float v = part[tok * n_out + o];
          if (o >= 3 && o < 17)
            ASSERT_EQ(v, y[tok * n_out + o]) << type_name(t);
          else
            ASSERT_EQ(v, -7.0f) << type_name(t);
        }
    }
  }
}

}  // namespace
}  // namespace endless::kernels
