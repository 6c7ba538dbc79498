// AVX-512 (F, BW, VL, DQ, VNNI, BF16) fast paths; compiled like dot_avx2.cpp, called only after
// dispatch.cpp has checked the CPU. The quantized formats use the shared 256-bit kernels with
// VPDPBUSD; float rows use 512-bit vectors in the exact order of ggml's AVX-512 build.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

// GCC 12's _mm512_undefined_ps idiom (self-initialization) trips -Wuninitialized inside the
// intrinsics headers; the values are never read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")  // fused only where written as FMA
#pragma GCC target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16")

namespace endless::kernels::detail {
namespace {

#define ENDLESS_SIMD_VNNI 1
#include "kernels/simd_dots.inc"
#undef ENDLESS_SIMD_VNNI

// Float rows reproduce ggml's AVX-512 build exactly. A product of one token goes through
// ggml's vec_dot (ggml-cpu.c): four accumulators of sixteen lanes over each 64 elements, summed
// (a0 + a2) + (a1 + a3) and reduced, then the remaining elements one by one (F32 in float, F16
// and BF16 in double). A product of two or more tokens goes through llamafile's tinyBLAS
// (sgemm.cpp) when the row length is a multiple of its step: one accumulator of sixteen lanes per
// element, reduced at the end. Loader::vec(p, i) loads sixteen elements at i as floats,
// Loader::one(p, i) one element.

struct F32Loader {
  static __m512 vec(const float* p, int64_t i) { return _mm512_loadu_ps(p + i); }
  static float one(const float* p, int64_t i) { return p[i]; }
};
struct F16Loader {
  static __m512 vec(const uint16_t* p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
  }
  static float one(const uint16_t* p, int64_t i) { return _cvtsh_ss(p[i]); }
};

// ggml_vec_dot_f32 / ggml_vec_dot_f16. Sum is float for F32, double for F16.
template <int NT, typename Elem, typename Loader, typename Sum>
void vec_float(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  const auto* x = static_cast<const Elem*>(vx);
  const Elem* y[NT];
  __m512 acc[NT][4];
  for (int t = 0; t < NT; ++t) {
    y[t] = act_row<Elem>(act, stride, t);
    for (auto& a : acc[t]) a = _mm512_setzero_ps();
  }
  const int64_t np = n & ~int64_t{63};
  for (int64_t i = 0; i < np; i += 64) {
    for (int j = 0; j < 4; ++j) {
      const __m512 w = Loader::vec(x, i + 16 * j);
      for (int t = 0; t < NT; ++t) acc[t][j] = _mm512_fmadd_ps(w, Loader::vec(y[t], i + 16 * j), acc[t][j]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    const __m512 a = _mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][2]), _mm512_add_ps(acc[t][1], acc[t][3]));
    Sum sum = static_cast<Sum>(_mm512_reduce_add_ps(a));
    // The tail as GCC compiles ggml's `sumf += x[i]*y[i]` with -march=native: whole groups of
    // eight as rounded products added in order, the last n % 8 as fused multiply-adds. (For F16
    // the products are exact, so this only matters for F32.)
    const int64_t unfused_end = np + ((n - np) & ~int64_t{7});
    for (int64_t i = np; i < n; ++i) {
      const float a = Loader::one(x, i), b = Loader::one(y[t], i);
      if (sizeof(Sum) == sizeof(float) && i >= unfused_end)
        sum = static_cast<Sum>(__builtin_fmaf(a, b, static_cast<float>(sum)));
      else
        sum += static_cast<Sum>(a * b);
    }
    out[t] = static_cast<float>(sum);
  }
}

// tinyBLAS<16, __m512, __m512, T, T, float>: one accumulator per element. Rows whose length is
// not a multiple of 16 make tinyBLAS decline; ggml then uses vec_dot.
template <int NT, typename Elem, typename Loader, typename Sum>
void gemm_float(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  if (n % 16 != 0) return vec_float<NT, Elem, Loader, Sum>(n, vx, act, stride, out);
  const auto* x = static_cast<const Elem*>(vx);
  const Elem* y[NT];
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) {
    y[t] = act_row<Elem>(act, stride, t);
    acc[t] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 w = Loader::vec(x, i);
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(w, Loader::vec(y[t], i), acc[t]);
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

template <int NT>
void dot_f32(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  vec_float<NT, float, F32Loader, float>(n, x, act, stride, out);
}
template <int NT>
void dot_f16(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  vec_float<NT, uint16_t, F16Loader, double>(n, x, act, stride, out);
}
template <int NT>
void gemm_f32(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  gemm_float<NT, float, F32Loader, float>(n, x, act, stride, out);
}
template <int NT>
void gemm_f16(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  gemm_float<NT, uint16_t, F16Loader, double>(n, x, act, stride, out);
}

inline __m512bh load_bf16x32(const uint16_t* p) {
  return (__m512bh)_mm512_loadu_si512(p);
}
inline float bf16_one(const uint16_t* p, int64_t i) { return bits_float(static_cast<uint32_t>(p[i]) << 16); }

// BF16, as ggml_vec_dot_bf16 with AVX512-BF16: VDPBF16PS (pairs of bfloat16 products added into
// a float lane) into two accumulators taking alternate groups of 32 of each 64 elements, each
// reduced and added in double, then the rest one by one in double.
template <int NT>
void dot_bf16(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  const auto* x = static_cast<const uint16_t*>(vx);
  const uint16_t* y[NT];
  __m512 c1[NT], c2[NT];
  for (int t = 0; t < NT; ++t) {
    y[t] = act_row<uint16_t>(act, stride, t);
    c1[t] = c2[t] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512bh w0 = load_bf16x32(x + i), w1 = load_bf16x32(x + i + 32);
    for (int t = 0; t < NT; ++t) {
      c1[t] = _mm512_dpbf16_ps(c1[t], w0, load_bf16x32(y[t] + i));
      c2[t] = _mm512_dpbf16_ps(c2[t], w1, load_bf16x32(y[t] + i + 32));
    }
  }
  for (int t = 0; t < NT; ++t) {
    double sum = 0;
    sum += static_cast<double>(_mm512_reduce_add_ps(c1[t]));
    sum += static_cast<double>(_mm512_reduce_add_ps(c2[t]));
    for (int64_t j = i; j < n; ++j) sum += static_cast<double>(bf16_one(x, j) * bf16_one(y[t], j));
    out[t] = static_cast<float>(sum);
  }
}

// tinyBLAS<32, __m512, __m512bh, bf16, bf16, float>: one VDPBF16PS accumulator per element over
// steps of 32; rows not a multiple of 32 go through vec_dot.
template <int NT>
void gemm_bf16(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  if (n % 32 != 0) return dot_bf16<NT>(n, vx, act, stride, out);
  const auto* x = static_cast<const uint16_t*>(vx);
  const uint16_t* y[NT];
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) {
    y[t] = act_row<uint16_t>(act, stride, t);
    acc[t] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < n; i += 32) {
    const __m512bh w = load_bf16x32(x + i);
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_dpbf16_ps(acc[t], w, load_bf16x32(y[t] + i));
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// ggml_v_expf (ggml-cpu.c, AVX-512 build), operation for operation.
inline __m512 v_expf(__m512 x) {
  const __m512 r = _mm512_set1_ps(0x1.8p23f);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
  const __m512 n = _mm512_sub_ps(z, r);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                      _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  const __m512 res = _mm512_scalef_ps(j, n);
  if (_mm512_kortestz(d, d)) return res;
  const __m512 zero = _mm512_setzero_ps();
  const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, zero, _CMP_LE_OQ), _mm512_set1_ps(INFINITY), zero);
  return _mm512_mask_blend_ps(d, res, alt);
}

}  // namespace

void avx512_silu_row(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512 e = v_expf(_mm512_sub_ps(_mm512_setzero_ps(), v));
    _mm512_storeu_ps(y + i, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
  }
  for (; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

double avx512_softmax_exp_row(const float* x, float* y, int64_t n, float max) {
  double sum = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = v_expf(_mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(max)));
    _mm512_storeu_ps(y + i, v);
    sum += static_cast<double>(_mm512_reduce_add_ps(v));
  }
  for (; i < n; ++i) {
    y[i] = std::exp(x[i] - max);
    sum += static_cast<double>(y[i]);
  }
  return sum;
}

// Four registers of maxima side by side (a chain of one VMAXPS per element was four cycles per
// score at depth). VMAXPS(x, m) returns m where x is NaN, as std::max(m, x) does.
float avx512_max_row(const float* x, int64_t n) {
  __m512 m[4];
  for (auto& v : m) v = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; ++k) m[k] = _mm512_max_ps(_mm512_loadu_ps(x + i + 16 * k), m[k]);
  for (; i + 16 <= n; i += 16) m[0] = _mm512_max_ps(_mm512_loadu_ps(x + i), m[0]);
  if (i < n) {  // the lanes past the end load as -inf
    const auto tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    m[1] = _mm512_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail, x + i), m[1]);
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3])));
}

MultiDotTable avx512_multi_gemm(TensorType w) {
  switch (w) {
    case TensorType::F32: return ENDLESS_MULTI_TABLE(gemm_f32);
    case TensorType::F16: return ENDLESS_MULTI_TABLE(gemm_f16);
    case TensorType::BF16: return ENDLESS_MULTI_TABLE(gemm_bf16);
    default: return MultiDotTable{};
  }
}

VecDotFn avx512_gemm_dot_fn(TensorType w) {
  switch (w) {
    case TensorType::F32: return ENDLESS_SINGLE(gemm_f32);
    case TensorType::F16: return ENDLESS_SINGLE(gemm_f16);
    case TensorType::BF16: return ENDLESS_SINGLE(gemm_bf16);
    default: return nullptr;
  }
}

MultiDotTable avx512_multi_dot(TensorType w) {
  switch (w) {
    case TensorType::F32: return ENDLESS_MULTI_TABLE(dot_f32);
    case TensorType::F16: return ENDLESS_MULTI_TABLE(dot_f16);
    case TensorType::BF16: return ENDLESS_MULTI_TABLE(dot_bf16);
    default: return quantized_multi_table(w);
  }
}

VecDotFn avx512_vec_dot_fn(TensorType w) {
  switch (w) {
    case TensorType::F32: return ENDLESS_SINGLE(dot_f32);
    case TensorType::F16: return ENDLESS_SINGLE(dot_f16);
    case TensorType::BF16: return ENDLESS_SINGLE(dot_bf16);
    default: return quantized_single(w);
  }
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
#pragma GCC diagnostic pop
