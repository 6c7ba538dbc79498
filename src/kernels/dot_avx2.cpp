// AVX2 + FMA + F16C fast paths. Compiled for those extensions by a pragma region, and only called
// after dispatch.cpp has checked that the CPU has them. Standard headers are included before the
// region so that no inline library code gets compiled for AVX2.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace endless::kernels::detail {
namespace {

#define ENDLESS_SIMD_VNNI 0
#include "kernels/simd_dots.inc"
#undef ENDLESS_SIMD_VNNI

// Float rows: four independent accumulators of eight lanes, then a scalar tail.
template <typename Load>
float dot_float_rows(int64_t n, Load load) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      const auto [a, b] = load(i + 8 * k);
      acc[k] = _mm256_fmadd_ps(a, b, acc[k]);
    }
  for (; i + 8 <= n; i += 8) {
    const auto [a, b] = load(i);
    acc[0] = _mm256_fmadd_ps(a, b, acc[0]);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

struct Pair {
  __m256 a, b;
};

float dot_f32(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const float*>(vx);
  const auto* y = static_cast<const float*>(vy);
  float sum = dot_float_rows(n, [&](int64_t i) {
    return Pair{_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)};
  });
  for (int64_t i = n & ~int64_t{7}; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

float dot_f16(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const uint16_t*>(vx);
  const auto* y = static_cast<const uint16_t*>(vy);
  float sum = dot_float_rows(n, [&](int64_t i) { return Pair{load_f16(x + i), load_f16(y + i)}; });
  for (int64_t i = n & ~int64_t{7}; i < n; ++i) sum += _cvtsh_ss(x[i]) * _cvtsh_ss(y[i]);
  return sum;
}

inline __m256 load_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

float dot_bf16(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const uint16_t*>(vx);
  const auto* y = static_cast<const uint16_t*>(vy);
  float sum = dot_float_rows(n, [&](int64_t i) { return Pair{load_bf16(x + i), load_bf16(y + i)}; });
  for (int64_t i = n & ~int64_t{7}; i < n; ++i) sum += bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]);
  return sum;
}

}  // namespace

void avx2_fp16_to_fp32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16(x + i));
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}

void avx2_fp32_to_fp16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

VecDotFn avx2_vec_dot_fn(TensorType w) {
  switch (w) {
    case TensorType::F32: return dot_f32;
    case TensorType::F16: return dot_f16;
    case TensorType::BF16: return dot_bf16;
    case TensorType::Q4_0: return dot_q4_0;
    case TensorType::Q4_1: return dot_q4_1;
    case TensorType::Q5_0: return dot_q5_0;
    case TensorType::Q5_1: return dot_q5_1;
    case TensorType::Q8_0: return dot_q8_0;
    case TensorType::Q2_K: return dot_q2_K;
    case TensorType::Q3_K: return dot_q3_K;
    case TensorType::Q4_K: return dot_q4_K;
    case TensorType::Q5_K: return dot_q5_K;
    case TensorType::Q6_K: return dot_q6_K;
    default: return nullptr;
  }
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
