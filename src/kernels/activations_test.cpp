// silu_row and softmax_exp_row: ggml's exp polynomial, the same bits on every instruction set,
// close to the true function.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace endless::kernels {
namespace {

class Activations : public ::testing::Test {
 protected:
  void TearDown() override { set_isa(saved_); }
  Isa saved_ = active_isa();
};

// Inputs over the whole useful range, with the edge cases, for a length that leaves a tail.
std::vector<float> inputs() {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-30.0f, 30.0f);
  std::vector<float> x(16 * 40 + 7);
  for (auto& v : x) v = d(rng);
  x[0] = 0.0f;
  x[1] = -0.0f;
  x[2] = 88.0f;
  x[3] = -87.0f;
  x[4] = -INFINITY;
  x[5] = 1e-20f;
  x[6] = -104.0f;  // past the polynomial's range: 2^n underflows
  x[7] = -300.0f;  // |n| > 192: flushed to zero
  return x;
}

TEST_F(Activations, SameBitsOnEveryIsaAndCloseToExp) {
  const auto x = inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> ref_silu(n), ref_exp(n);
  set_isa(Isa::scalar);
  std::vector<float> xs = x;
  xs[4] = -80.0f;  // silu of -inf is not a number worth comparing
  silu_row(xs.data(), ref_silu.data(), n);
  const float mx = 30.0f;
  const double ref_sum = softmax_exp_row(x.data(), ref_exp.data(), n, mx);
  double want_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::exp(static_cast<double>(x[i] - mx));  // the float difference, as given
    want_sum += e;
    EXPECT_NEAR(ref_exp[i], e, 4e-7 * e + 1e-38) << "exp at " << x[i];
    const double s = xs[i] / (1.0 + std::exp(-static_cast<double>(xs[i])));
    EXPECT_NEAR(ref_silu[i], s, 4e-7 * std::fabs(s) + 1e-38) << "silu at " << xs[i];
  }
  EXPECT_EQ(ref_exp[4], 0.0f);
  EXPECT_EQ(ref_exp[7], 0.0f);
  EXPECT_NEAR(ref_sum, want_sum, 1e-6 * want_sum);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (isa == Isa::avx512 && best_isa() != Isa::avx512) continue;
    if (isa == Isa::avx2 && best_isa() == Isa::scalar) continue;
    set_isa(isa);
    std::vector<float> silu(n), ex(n);
    silu_row(xs.data(), silu.data(), n);
    EXPECT_EQ(softmax_exp_row(x.data(), ex.data(), n, mx), ref_sum) << isa_name(isa);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(silu[i], ref_silu[i]) << isa_name(isa) << " silu at " << xs[i];
      ASSERT_EQ(ex[i], ref_exp[i]) << isa_name(isa) << " exp at " << x[i];
    }
  }
}

// The polynomial is not libm's expf: ggml's own values are what the forward pass must use.
TEST_F(Activations, ExpIsGgmlsPolynomialNotLibm) {
  const auto x = inputs();
  std::vector<float> ex(x.size());
  softmax_exp_row(x.data(), ex.data(), static_cast<int64_t>(x.size()), 0.0f);
  int differ = 0;
  for (size_t i = 0; i < x.size() - x.size() % 16; ++i) differ += ex[i] != std::exp(x[i]);
  EXPECT_GT(differ, 0);
  // The tail past the last group of sixteen is libm's.
  for (size_t i = x.size() - x.size() % 16; i < x.size(); ++i) EXPECT_EQ(ex[i], std::exp(x[i]));
}

// max_row equals std::max taken element by element from -inf, on every instruction set and every
// length (whole registers, groups of four, a tail), wherever the maximum lies; NaNs are skipped.
TEST_F(Activations, MaxRowIsStdMaxElementByElement) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-50.0f, 50.0f);
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (isa == Isa::avx512 && best_isa() != Isa::avx512) continue;
    if (isa == Isa::avx2 && best_isa() == Isa::scalar) continue;
    set_isa(isa);
    EXPECT_EQ(max_row(nullptr, 0), -INFINITY) << isa_name(isa);
    for (int64_t n : {1, 5, 15, 16, 17, 63, 64, 65, 130, 1000}) {
      std::vector<float> x(n);
      for (auto& v : x) v = d(rng) - 100.0f;  // all negative: a tail that counted as 0 would show
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        std::vector<float> y = x;
        y[at] = -1.5f;
        if (n > 2) y[(at + 1) % n] = NAN;
        float want = -INFINITY;
        for (float v : y) want = std::max(want, v);
        EXPECT_EQ(max_row(y.data(), n), want) << isa_name(isa) << " n " << n << " max at " << at;
      }
      std::vector<float> inf(n, -INFINITY);
      EXPECT_EQ(max_row(inf.data(), n), -INFINITY) << isa_name(isa) << " n " << n;
    }
  }
}

}  // namespace
}  // namespace endless::kernels
