// gemm_rows against matmul_rows: every output bit for bit, every tile shape and remainder.
#include "kernels/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

namespace endless::kernels {
namespace {

// Weights for a test: mostly what llama-quantize writes for Gaussian rows, with a few rows of raw
// random bytes (every code, including ones the quantizers never write: -128 in Q8_0, extreme
// scales) so the integer paths meet their whole range.
std::vector<uint8_t> make_weights(TensorType t, int64_t n_in, int64_t n_out, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t rs = row_size(t, n_in);
  std::vector<uint8_t> w(rs * n_out);
  std::vector<float> row(n_in);
  for (int64_t o = 0; o < n_out; ++o) {
    for (auto& v : row) v = normal(rng) * (o % 5 == 0 ? 30.0f : 1.0f);
    quantize_weights_row(t, row.data(), w.data() + o * rs, n_in);
    if (o % 7 == 3 && info(t).block_size > 1) {
      // Raw codes; each block's scales set to finite, moderate halves.
      const size_t bs = info(t).type_size;
      std::vector<size_t> halves;  // offsets of the half-precision scale fields
      if (t == TensorType::Q8_0 || t == TensorType::Q4_0) halves = {0};
      else if (t == TensorType::Q4_K) halves = {0, 2};
      else if (t == TensorType::Q6_K) halves = {208};
      else continue;
      for (size_t b = 0; b < rs / bs; ++b) {
        uint8_t* blk = w.data() + o * rs + b * bs;
        for (size_t k = 0; k < bs; ++k) blk[k] = static_cast<uint8_t>(rng());
        for (size_t at : halves) {
          const uint16_t d = fp32_to_fp16(std::ldexp(1.0f + (rng() % 1000) / 1000.0f, static_cast<int>(rng() % 20) - 14));
          std::memcpy(blk + at, &d, 2);
        }
      }
    }
  }
  return w;
}

std::vector<uint8_t> make_activations(TensorType w_type, int64_t n_in, int64_t n_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n_in * n_tokens);
  for (int64_t i = 0; i < n_in * n_tokens; ++i) {
    x[i] = normal(rng);
    if (i % 97 == 5) x[i] *= 1000.0f;  // outliers, as real activations have
    if (i % 89 == 7) x[i] = 0.0f;
  }
  std::vector<uint8_t> act(activations_size(w_type, n_in, n_tokens));
  convert_activations(w_type, x.data(), n_in, n_tokens, act.data());
  return act;
}

std::string bits_diff(float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.9g (0x%08x) vs %.9g (0x%08x)", a, ua, b, ub);
  return buf;
}

struct Case {
  TensorType type;
  int64_t n_in;
};
void PrintTo(const Case& c, std::ostream* os) { *os << type_name(c.type) << " n_in " << c.n_in; }

void check(TensorType t, int64_t n_in, int64_t n_out, int64_t n_tokens, int64_t r0, int64_t r1, uint32_t seed) {
  const auto w = make_weights(t, n_in, n_out, seed);
  const auto act = make_activations(t, n_in, n_tokens, seed + 1);
  std::vector<float> ref(n_out * n_tokens), got(n_out * n_tokens);
  matmul_rows(t, w.data(), n_in, n_out, act.data(), n_tokens, ref.data(), 0, n_out);
  const float sentinel = -12345.5f;
  std::fill(got.begin(), got.end(), sentinel);
  ASSERT_TRUE(gemm_rows(t, w.data(), n_in, n_out, act.data(), n_tokens, got.data(), r0, r1))
      << type_name(t) << " n_in " << n_in << " tokens " << n_tokens;
  for (int64_t tk = 0; tk < n_tokens; ++tk)
    for (int64_t o = 0; o < n_out; ++o) {
      const float g = got[tk * n_out + o];
      if (o < r0 || o >= r1) {
        ASSERT_EQ(g, sentinel) << "row " << o << " outside [" << r0 << ", " << r1 << ") was written";
        continue;
      }
      const float e = ref[tk * n_out + o];
      ASSERT_EQ(std::memcmp(&g, &e, 4), 0)
          << type_name(t) << " n_in " << n_in << " n_out " << n_out << " tokens " << n_tokens
          << " token " << tk << " row " << o << ": " << bits_diff(g, e);
    }
}

class GemmTest : public ::testing::TestWithParam<Case> {};

TEST_P(GemmTest, MatchesMatmulRowsBitForBit) {
  const Case c = GetParam();
  if (!has_gemm(c.type, c.n_in, 1) && !has_gemm(c.type, c.n_in, 2))
    GTEST_SKIP() << "no gemm path for " << type_name(c.type) << " on this CPU (" << isa_name(active_isa()) << ")";
  uint32_t seed = 100;
  for (int64_t n_tokens : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17}) {
    if (!has_gemm(c.type, c.n_in, n_tokens)) continue;
    // Whole products, odd row counts, and ranges that start and end inside a tile.
    check(c.type, c.n_in, 37, n_tokens, 0, 37, ++seed);
    check(c.type, c.n_in, 37, n_tokens, 5, 30, ++seed);
    check(c.type, c.n_in, 16, n_tokens, 0, 16, ++seed);
    check(c.type, c.n_in, 9, n_tokens, 8, 9, ++seed);
    // Row counts that are multiples of 8 (Q4_0 by block: groups of 16 rows and a last group of
    // 8), whole and from inside a group.
    check(c.type, c.n_in, 40, n_tokens, 0, 40, ++seed);
    check(c.type, c.n_in, 40, n_tokens, 3, 37, ++seed);
    check(c.type, c.n_in, 24, n_tokens, 16, 24, ++seed);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GemmTest,
                         ::testing::Values(Case{TensorType::F32, 64}, Case{TensorType::F32, 1024}, Case{TensorType::F32, 1056},
                                           Case{TensorType::F16, 64}, Case{TensorType::F16, 1024}, Case{TensorType::F16, 1056},
                                           Case{TensorType::BF16, 64}, Case{TensorType::BF16, 1024}, Case{TensorType::BF16, 1056}, Case{TensorType::BF16, 2816},
                                           Case{TensorType::Q8_0, 32}, Case{TensorType::Q8_0, 1024},
                                           Case{TensorType::Q4_0, 32}, Case{TensorType::Q4_0, 2816},
                                           Case{TensorType::Q4_K, 256}, Case{TensorType::Q4_K, 2816},
                                           Case{TensorType::Q6_K, 256}, Case{TensorType::Q6_K, 1024}),
                         [](const auto& info) {
                           return std::string(type_name(info.param.type)) + "_" + std::to_string(info.param.n_in);
                         });

// detail::ScopedAmxArithmetic runs the by-block paths of Q8_0, Q4_K and Q6_K on any CPU; only the
// AMX tiles themselves need one with AMX.
using AmxArithmetic = detail::ScopedAmxArithmetic;

// Q8_0, Q4_K and Q6_K where the CPU counts as having AMX: row counts that are a multiple of 32 by
// block (the VNNI tiles, and the AMX tiles from 16 tokens on a CPU with AMX), the others through
// the token pairs; bit for bit matmul_rows's either way.
TEST(Gemm, AmxByBlockTypesMatchMatmulRowsBitForBit) {
  if (!has_gemm(TensorType::Q8_0, 32, 1)) GTEST_SKIP() << "no gemm path for Q8_0 on this CPU (" << isa_name(active_isa()) << ")";
  AmxArithmetic amx(true);
  if (!detail::cpu_has_amx_int8()) std::printf("note: no AMX here: Q8_0 by block through the VNNI tiles only\n");
  uint32_t seed = 1100;
  for (auto [t, n_ins] : {std::pair{TensorType::Q8_0, std::vector<int64_t>{32, 1024}},
                          std::pair{TensorType::Q4_K, std::vector<int64_t>{256, 2816}},
                          std::pair{TensorType::Q6_K, std::vector<int64_t>{256, 1024}}})
    for (int64_t n_in : n_ins)
      for (int64_t n_tokens : {1, 3, 8, 9, 16, 17, 35}) {
        check(t, n_in, 64, n_tokens, 0, 64, ++seed);
        check(t, n_in, 64, n_tokens, 16, 48, ++seed);
        check(t, n_in, 64, n_tokens, 5, 37, ++seed);
        check(t, n_in, 40, n_tokens, 0, 40, ++seed);  // not by block
      }
}

// Matrices packed for the tiles (pack_weights: Q4_0, and Q8_0 where multiplied by block) give the
// bits of their rows, and the packed copy is what is read wherever a range covers whole groups of
// sixteen rows.
TEST(Gemm, PackedMatricesMatchRowsBitForBit) {
  if (packed_weights_size(TensorType::Q4_0, 64, 48) == 0)
    GTEST_SKIP() << "no packed layout on this CPU (" << isa_name(active_isa()) << ")";
  AmxArithmetic amx(true);
  EXPECT_EQ(packed_weights_size(TensorType::Q4_0, 64, 40), 0u) << "row counts not a multiple of 16 stay as rows";
  EXPECT_EQ(packed_weights_size(TensorType::Q8_0, 64, 48), 0u) << "Q8_0 of 48 rows is not by block";
  EXPECT_EQ(packed_weights_size(TensorType::Q5_K, 256, 64), 0u);
  {
    AmxArithmetic no_amx(false);
    EXPECT_EQ(packed_weights_size(TensorType::Q8_0, 64, 64), 0u) << "Q8_0 without AMX is not by block";
    EXPECT_EQ(packed_weights_size(TensorType::Q4_K, 256, 64), 0u) << "Q4_K without AMX is not by block";
    EXPECT_EQ(packed_weights_size(TensorType::Q6_K, 256, 64), 0u) << "Q6_K without AMX is not by block";
  }
  uint32_t seed = 700;
  for (auto [t, n_out] : {std::pair{TensorType::Q4_0, int64_t{48}}, std::pair{TensorType::Q8_0, int64_t{64}},
                          std::pair{TensorType::Q4_K, int64_t{64}}, std::pair{TensorType::Q6_K, int64_t{64}}})
    for (int64_t n_in : {256, 2816}) {
      const size_t bytes = packed_weights_size(t, n_in, n_out);
      // Q4_K's packed groups hold its scales and mins unpacked: 2368 bytes per super-block of 16
      // rows; the others take what their rows take in the file.
      ASSERT_EQ(bytes, t == TensorType::Q4_K ? static_cast<size_t>(n_out / 16 * n_in / 256 * 2368) : row_size(t, n_in) * n_out)
          << type_name(t);
      const auto w = make_weights(t, n_in, n_out, ++seed);
      const auto other = make_weights(t, n_in, n_out, ++seed);
      const size_t alloc = (bytes + 63) / 64 * 64;  // aligned_alloc takes whole multiples of the alignment
      std::unique_ptr<uint8_t, decltype(&std::free)> packed(static_cast<uint8_t*>(std::aligned_alloc(64, alloc)), &std::free),
          packed_other(static_cast<uint8_t*>(std::aligned_alloc(64, alloc)), &std::free);
      pack_weights(t, w.data(), n_in, n_out, packed.get());
      pack_weights(t, other.data(), n_in, n_out, packed_other.get());
      for (int64_t n_tokens : {1, 2, 3, 5, 8, 9, 16, 17, 33}) {
        const auto act = make_activations(t, n_in, n_tokens, ++seed);
        std::vector<float> ref(n_out * n_tokens), ref_other(n_out * n_tokens), got(n_out * n_tokens);
        matmul_rows(t, w.data(), n_in, n_out, act.data(), n_tokens, ref.data(), 0, n_out);
        matmul_rows(t, other.data(), n_in, n_out, act.data(), n_tokens, ref_other.data(), 0, n_out);
        GemmInput in;
        in.prepare(t, act.data(), n_in, n_tokens);
        auto expect_rows = [&](const std::vector<float>& want, int64_t r0, int64_t r1, const char* what) {
          for (int64_t tk = 0; tk < n_tokens; ++tk)
            for (int64_t o = r0; o < r1; ++o) {
              const float g = got[tk * n_out + o], e = want[tk * n_out + o];
              ASSERT_EQ(std::memcmp(&g, &e, 4), 0) << type_name(t) << " " << what << ": n_in " << n_in << " tokens "
                                                    << n_tokens << " token " << tk << " row " << o << ": "
                                                    << bits_diff(g, e);
            }
        };
        ASSERT_TRUE(gemm_rows(t, w.data(), n_in, n_out, in, got.data(), 0, n_out, packed.get()));
        expect_rows(ref, 0, n_out, "packed");
        // Another matrix's packed copy beside these rows: whole groups read the packed copy ...
        ASSERT_TRUE(gemm_rows(t, w.data(), n_in, n_out, in, got.data(), 16, 48, packed_other.get()));
        expect_rows(ref_other, 16, 48, "whole groups");
        // ... a range that starts or ends inside a group reads the rows.
        ASSERT_TRUE(gemm_rows(t, w.data(), n_in, n_out, in, got.data(), 5, 37, packed_other.get()));
        expect_rows(ref, 5, 37, "inside a group");
      }
    }
  const Isa saved = active_isa();
  set_isa(Isa::avx2);
  EXPECT_EQ(packed_weights_size(TensorType::Q4_0, 64, 48), 0u) << "packed only for the instruction set whose tiles read it";
  set_isa(saved);
}

// An input prepared for by-block products only (no token pairs) serves those bit for bit and
// declines the others, leaving their outputs alone, rather than read pairs it does not hold.
TEST(Gemm, ByBlockOnlyInputServesByBlockRowsAndDeclinesTheRest) {
  const int64_t n_in = 256;
  if (!has_gemm(TensorType::Q4_0, n_in, 3)) GTEST_SKIP() << "no gemm path for Q4_0 on this CPU (" << isa_name(active_isa()) << ")";
  AmxArithmetic amx(true);
  uint32_t seed = 900;
  // Q4_0 of 40 rows (a multiple of 8), Q8_0, Q4_K and Q6_K of 64 (of 32) by block; 6 rows of each
  // not.
  for (auto [t, n_out] : {std::pair{TensorType::Q4_0, int64_t{40}}, std::pair{TensorType::Q8_0, int64_t{64}},
                          std::pair{TensorType::Q4_K, int64_t{64}}, std::pair{TensorType::Q6_K, int64_t{64}}})
    for (int64_t n_tokens : {1, 3, 9, 17}) {
      const auto act = make_activations(t, n_in, n_tokens, ++seed);
      GemmInput in;
      in.prepare(t, act.data(), n_in, n_tokens, /*by_block_only=*/true);
      EXPECT_FALSE(in.has_pairs());
      const auto w = make_weights(t, n_in, n_out, ++seed);
      std::vector<float> want(n_out * n_tokens), got(n_out * n_tokens);
      matmul_rows(t, w.data(), n_in, n_out, act.data(), n_tokens, want.data(), 0, n_out);
      ASSERT_TRUE(gemm_rows(t, w.data(), n_in, n_out, in, got.data(), 0, n_out));
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float))) << type_name(t) << " " << n_tokens << " tokens";
      // 6 rows: not by block, would need the pairs: declined, y untouched.
      const auto w6 = make_weights(t, n_in, 6, ++seed);
      std::vector<float> y6(6 * n_tokens, -1.0f);
      EXPECT_FALSE(gemm_rows(t, w6.data(), n_in, 6, in, y6.data(), 0, 6));
      EXPECT_EQ(y6, std::vector<float>(6 * n_tokens, -1.0f));
      // Prepared for every product, the same 6 rows run tiled.
      in.prepare(t, act.data(), n_in, n_tokens);
      EXPECT_TRUE(in.has_pairs());
      std::vector<float> want6(6 * n_tokens);
      matmul_rows(t, w6.data(), n_in, 6, act.data(), n_tokens, want6.data(), 0, 6);
      ASSERT_TRUE(gemm_rows(t, w6.data(), n_in, 6, in, y6.data(), 0, 6));
      EXPECT_EQ(0, std::memcmp(want6.data(), y6.data(), want6.size() * sizeof(float))) << type_name(t) << " " << n_tokens << " tokens";
    }
}

// Row lengths the tiles do not cover, and types without a path, are left to matmul_rows.
TEST(Gemm, DeclinesWhatItDoesNotCover) {
  std::vector<float> y(4, 1.0f);
  std::vector<uint8_t> w(4096), act(4096);
  EXPECT_FALSE(gemm_rows(TensorType::F32, w.data(), 24, 2, act.data(), 2, y.data(), 0, 2));
  EXPECT_FALSE(gemm_rows(TensorType::BF16, w.data(), 48, 2, act.data(), 2, y.data(), 0, 2));
  EXPECT_FALSE(gemm_rows(TensorType::Q4_1, w.data(), 32, 2, act.data(), 2, y.data(), 0, 2));
  EXPECT_FALSE(has_gemm(TensorType::Q5_1, 256, 4));
  EXPECT_EQ(y[0], 1.0f);
}

TEST(Gemm, FollowsTheActiveInstructionSet) {
  const Isa saved = active_isa();
  set_isa(Isa::scalar);
  EXPECT_FALSE(has_gemm(TensorType::F32, 1024, 8));
  std::vector<float> y(2, 1.0f);
  std::vector<uint8_t> w(8192), act(8192);
  EXPECT_FALSE(gemm_rows(TensorType::F32, w.data(), 1024, 1, act.data(), 2, y.data(), 0, 1));
  set_isa(saved);
  EXPECT_EQ(has_gemm(TensorType::F32, 1024, 8), saved == Isa::avx512);
}

}  // namespace
}  // namespace endless::kernels

namespace endless::kernels {
namespace {

// BF16 prefill computed by FMAs (split pairs, denormals flushed while multiplying) gives
// VDPBF16PS's bits, and so does the VDPBF16PS tile: both ways on whichever CPU runs the test,
// on values that make VDPBF16PS flush (denormal inputs, products and sums below the normal
// range), besides ordinary ones.
TEST(Gemm, Bf16ByFmaGivesVdpbf16psBits) {
  if (!has_gemm(TensorType::BF16, 64, 16)) GTEST_SKIP() << "no BF16 tiles on this CPU (" << isa_name(active_isa()) << ")";
  const bool saved = detail::bf16_by_fma();
  std::mt19937 rng(77);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t n_in : {64, 1056, 2816}) {
    const int64_t n_out = 24;
    for (int64_t n_tokens : {13, 17, 40}) {
      for (bool tiny : {false, true}) {
        // tiny: magnitudes around 2^-63, so products lie near 2^-126 and below.
        auto value = [&] {
          float v = normal(rng);
          if (tiny) v = std::ldexp(v, -63 + static_cast<int>(rng() % 4));
          if (rng() % 53 == 0) v = std::ldexp(1.0f + static_cast<float>(rng() % 100) / 128.0f, -127 - static_cast<int>(rng() % 6));
          return v;
        };
        std::vector<float> wf(n_in * n_out), xf(n_in * n_tokens);
        for (auto& v : wf) v = value();
        for (auto& v : xf) v = value();
        std::vector<uint8_t> w(row_size(TensorType::BF16, n_in) * n_out);
        for (int64_t o = 0; o < n_out; ++o)
          quantize_weights_row(TensorType::BF16, wf.data() + o * n_in, w.data() + o * row_size(TensorType::BF16, n_in), n_in);
        std::vector<uint8_t> act(activations_size(TensorType::BF16, n_in, n_tokens));
        convert_activations(TensorType::BF16, xf.data(), n_in, n_tokens, act.data());
        std::vector<float> ref(n_out * n_tokens);
        matmul_rows(TensorType::BF16, w.data(), n_in, n_out, act.data(), n_tokens, ref.data(), 0, n_out);
        for (bool by_fma : {true, false}) {
          detail::set_bf16_by_fma(by_fma);
          std::vector<float> got(n_out * n_tokens, -1.0f);
          ASSERT_TRUE(gemm_rows(TensorType::BF16, w.data(), n_in, n_out, act.data(), n_tokens, got.data(), 0, n_out));
          for (size_t i = 0; i < got.size(); ++i)
            ASSERT_EQ(std::memcmp(&got[i], &ref[i], 4), 0)
                << (by_fma ? "by FMA" : "VDPBF16PS") << " n_in " << n_in << " tokens " << n_tokens
                << (tiny ? " tiny" : "") << " at " << i << ": " << bits_diff(got[i], ref[i]);
        }
      }
    }
  }
  detail::set_bf16_by_fma(saved);
}

}  // namespace
}  // namespace endless::kernels
