// ggml's vectorized float functions for the forward pass, bit for bit. ggml's AVX-512 build
// computes exp in SiLU and softmax with its own polynomial (ggml_v_expf, adapted from ARM's
// optimized routines: at most ~1.5 ulp from expf, not equal to it) sixteen lanes at a time, and
// the elements past the last whole group with libm's expf. Every step of that polynomial is an
// IEEE operation (fused multiply-adds, products, a power-of-two scaling), so this scalar
// emulation gives the same bits; the AVX-512 kernels (dot_avx512.cpp) are the fast path.
#include <algorithm>
#include <cmath>

#include "kernels/internal.h"
#include "kernels/kernels.h"

#pragma GCC optimize("fp-contract=off")  // fused only where written as fmaf

namespace endless::kernels {

namespace detail {

float expf_ggml(float x) {
  const float r = 0x1.8p23f;
  const float z = std::fmaf(x, 0x1.715476p+0f, r);
  const float n = z - r;  // round(x / ln 2)
  // b = x - n ln 2, with ln 2 in two parts; then 2^n * (1 + b + ... ) by a degree-5 polynomial.
  const float b = std::fmaf(-n, 0x1.7f7d1cp-20f, std::fmaf(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float j = std::fmaf(
      std::fmaf(std::fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
      u, std::fmaf(0x1.ffffecp-1f, b, 1.0f));
  if (std::isnan(n)) return n;
  if (std::fabs(n) > 192) return n <= 0 ? 0.0f : INFINITY;
  return std::scalbn(j, static_cast<int>(n));
}

float reduce16(const float* v) {
  // _mm512_reduce_add_ps as GCC defines it: halves, then quarters, then pairs.
  float a[8], b[4];
  for (int k = 0; k < 8; ++k) a[k] = v[k + 8] + v[k];
  for (int k = 0; k < 4; ++k) b[k] = a[k + 4] + a[k];
  return (b[0] + b[2]) + (b[1] + b[3]);
}

}  // namespace detail

void silu_row(const float* x, float* y, int64_t n) {
  if (active_isa() == Isa::avx512) return detail::avx512_silu_row(x, y, n);
  const int64_t whole = n - n % 16;
  int64_t i = 0;
  for (; i < whole; ++i) y[i] = x[i] / (1.0f + detail::expf_ggml(0.0f - x[i]));
  for (; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

float max_row(const float* x, int64_t n) {
  if (active_isa() == Isa::avx512) return detail::avx512_max_row(x, n);
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

double softmax_exp_row(const float* x, float* y, int64_t n, float max) {
  if (active_isa() == Isa::avx512) return detail::avx512_softmax_exp_row(x, y, n, max);
  double sum = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 16; ++k) y[i + k] = detail::expf_ggml(x[i + k] - max);
    sum += static_cast<double>(detail::reduce16(y + i));
  }
  for (; i < n; ++i) {
    y[i] = std::exp(x[i] - max);
    sum += static_cast<double>(y[i]);
  }
  return sum;
}

}  // namespace endless::kernels
