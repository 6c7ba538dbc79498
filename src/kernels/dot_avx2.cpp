// AVX2 + FMA + F16C fast paths. Compiled for those extensions function by function (a pragma
// region), and only called after dispatch.cpp has checked the CPU has them. Standard headers are
// included before the region so that no inline library code gets compiled for AVX2.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace endless::kernels::detail {

void avx2_fp16_to_fp32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
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
    default: return nullptr;
  }
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
