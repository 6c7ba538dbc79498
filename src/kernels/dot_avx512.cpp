// AVX-512 (F, BW, VL, DQ, VNNI, BF16) fast paths; compiled like dot_avx2.cpp, called only after
// dispatch.cpp has checked the CPU. The quantized formats use the shared 256-bit kernels with
// VPDPBUSD; float rows use 512-bit vectors with masked tails, and BF16 rows VDPBF16PS as ggml does.
#include <immintrin.h>

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

inline __mmask16 tail_mask16(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}

// F32 / F16 rows, NT at a time: per row two accumulators of sixteen lanes taking alternate groups
// of sixteen elements; the tail through masked loads. Loader::vec(p, i, mask) loads up to
// sixteen elements at i as floats (zeros outside the mask).
template <int NT, typename Elem, typename Loader>
void dot_float(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  const auto* x = static_cast<const Elem*>(vx);
  const Elem* y[NT];
  __m512 acc0[NT], acc1[NT];
  for (int t = 0; t < NT; ++t) {
    y[t] = act_row<Elem>(act, stride, t);
    acc0[t] = acc1[t] = _mm512_setzero_ps();
  }
  const __mmask16 all = 0xFFFF;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 w0 = Loader::vec(x, i, all), w1 = Loader::vec(x, i + 16, all);
    for (int t = 0; t < NT; ++t) {
      acc0[t] = _mm512_fmadd_ps(w0, Loader::vec(y[t], i, all), acc0[t]);
      acc1[t] = _mm512_fmadd_ps(w1, Loader::vec(y[t], i + 16, all), acc1[t]);
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i);
    const __m512 w0 = Loader::vec(x, i, m);
    for (int t = 0; t < NT; ++t) acc0[t] = _mm512_fmadd_ps(w0, Loader::vec(y[t], i, m), acc0[t]);
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
}

struct F32Loader {
  static __m512 vec(const float* p, int64_t i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p + i); }
};
struct F16Loader {
  static __m512 vec(const uint16_t* p, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + i));
  }
};

template <int NT>
void dot_f32(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  dot_float<NT, float, F32Loader>(n, x, act, stride, out);
}
template <int NT>
void dot_f16(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  dot_float<NT, uint16_t, F16Loader>(n, x, act, stride, out);
}

inline __m512bh load_bf16x32(const uint16_t* p, __mmask32 m) {
  return (__m512bh)_mm512_maskz_loadu_epi16(m, p);
}

// BF16: VDPBF16PS multiplies pairs of bfloat16 and adds both products into a float lane.
template <int NT>
void dot_bf16(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  const auto* x = static_cast<const uint16_t*>(vx);
  const uint16_t* y[NT];
  __m512 acc0[NT], acc1[NT];
  for (int t = 0; t < NT; ++t) {
    y[t] = act_row<uint16_t>(act, stride, t);
    acc0[t] = acc1[t] = _mm512_setzero_ps();
  }
  const __mmask32 all = 0xFFFFFFFFu;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512bh w0 = load_bf16x32(x + i, all), w1 = load_bf16x32(x + i + 32, all);
    for (int t = 0; t < NT; ++t) {
      acc0[t] = _mm512_dpbf16_ps(acc0[t], w0, load_bf16x32(y[t] + i, all));
      acc1[t] = _mm512_dpbf16_ps(acc1[t], w1, load_bf16x32(y[t] + i + 32, all));
    }
  }
  for (; i < n; i += 32) {
    const __mmask32 m = n - i >= 32 ? all : __mmask32((1u << (n - i)) - 1);
    const __m512bh w0 = load_bf16x32(x + i, m);
    for (int t = 0; t < NT; ++t) acc0[t] = _mm512_dpbf16_ps(acc0[t], w0, load_bf16x32(y[t] + i, m));
  }
  for (int t = 0; t < NT; ++t) out[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
}

}  // namespace

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
