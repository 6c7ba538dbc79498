// AVX2 + FMA + F16C fast paths. Compiled for those extensions by a pragma region, and only called
// after dispatch.cpp has checked that the CPU has them. Standard headers are included before the
// region so that no inline library code gets compiled for AVX2.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")  // fused only where written as FMA
#pragma GCC target("avx2,fma,f16c,bmi2")

namespace endless::kernels::detail {
namespace {

#define ENDLESS_SIMD_VNNI 0
#include "kernels/simd_dots.inc"
#undef ENDLESS_SIMD_VNNI

// Float rows, NT at a time: per row two accumulators of eight lanes taking alternate groups of
// eight elements, then a scalar tail. Loader::vec(p, i) loads eight elements at i as floats,
// Loader::one(p, i) one element.
template <int NT, typename Elem, typename Loader>
void dot_float(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  const auto* x = static_cast<const Elem*>(vx);
  const Elem* y[NT];
  __m256 acc0[NT], acc1[NT];
  for (int t = 0; t < NT; ++t) {
    y[t] = act_row<Elem>(act, stride, t);
    acc0[t] = acc1[t] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = Loader::vec(x, i), w1 = Loader::vec(x, i + 8);
    for (int t = 0; t < NT; ++t) {
      acc0[t] = _mm256_fmadd_ps(w0, Loader::vec(y[t], i), acc0[t]);
      acc1[t] = _mm256_fmadd_ps(w1, Loader::vec(y[t], i + 8), acc1[t]);
    }
  }
  if (i + 8 <= n) {
    const __m256 w0 = Loader::vec(x, i);
    for (int t = 0; t < NT; ++t) acc0[t] = _mm256_fmadd_ps(w0, Loader::vec(y[t], i), acc0[t]);
    i += 8;
  }
  for (int t = 0; t < NT; ++t) {
    float sum = hsum(_mm256_add_ps(acc0[t], acc1[t]));
    for (int64_t j = i; j < n; ++j) sum += Loader::one(x, j) * Loader::one(y[t], j);
    out[t] = sum;
  }
}

struct F32Loader {
  static __m256 vec(const float* p, int64_t i) { return _mm256_loadu_ps(p + i); }
  static float one(const float* p, int64_t i) { return p[i]; }
};
struct F16Loader {
  static __m256 vec(const uint16_t* p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)));
  }
  static float one(const uint16_t* p, int64_t i) { return _cvtsh_ss(p[i]); }
};
struct BF16Loader {
  static __m256 vec(const uint16_t* p, int64_t i) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float one(const uint16_t* p, int64_t i) { return bits_float(static_cast<uint32_t>(p[i]) << 16); }
};

template <int NT>
void dot_f32(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  dot_float<NT, float, F32Loader>(n, x, act, stride, out);
}
template <int NT>
void dot_f16(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  dot_float<NT, uint16_t, F16Loader>(n, x, act, stride, out);
}
template <int NT>
void dot_bf16(int64_t n, const void* x, const void* act, size_t stride, float* out) {
  dot_float<NT, uint16_t, BF16Loader>(n, x, act, stride, out);
}

}  // namespace

void avx2_fp16_to_fp32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, F16Loader::vec(x, i));
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}

void avx2_fp32_to_fp16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

namespace {

// Rows by block (kernels::by_block): each block's sum exact in integers, then one fused
// multiply-add per block, blocks in order; up to T tokens per weight row, so each block is
// unpacked once for all of them.

// A block's 32 weights as signed bytes.
struct Q4_0Weights {
  using Block = block_q4_0;
  static __m256i values(const Block& x) {
    // Elements 0-15 (low nibbles) then 16-31 (high nibbles), each minus 8.
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.qs));
    const __m128i low4 = _mm_set1_epi8(0x0F);
    return _mm256_sub_epi8(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), low4), _mm_and_si128(q, low4)),
                           _mm256_set1_epi8(8));
  }
};
struct Q8_0Weights {
  using Block = block_q8_0;
  static __m256i values(const Block& x) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs)); }
};

template <typename Weights, int T>
void dot_by_block(int64_t n, const void* vx, const void* act, size_t stride, float* out) {
  const auto* x = static_cast<const typename Weights::Block*>(vx);
  const block_q8_0* y[T];
  for (int t = 0; t < T; ++t) y[t] = reinterpret_cast<const block_q8_0*>(static_cast<const uint8_t*>(act) + t * stride);
  float acc[T] = {};
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < n / 32; ++b) {
    const __m256i w = Weights::values(x[b]);
    const __m256i w_abs = _mm256_sign_epi8(w, w);  // -128 stays 0x80: 128 as the unsigned byte
    const float dw = fp16_to_fp32(x[b].d);
    for (int t = 0; t < T; ++t) {
      // |w| * (y with w's sign): pairs of products at most 2 * 128 * 127 in magnitude (the
      // activations' quantizer writes no -128), so the 16-bit sums never saturate and the
      // block's sum is exact.
      const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t][b].qs));
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(yv, w)), ones);
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      const float sum = static_cast<float>(_mm_cvtsi128_si32(s4));
      acc[t] = std::fma(sum, dw * fp16_to_fp32(y[t][b].d), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) out[t] = acc[t];
}

template <typename Weights>
MultiDotTable by_block_table() {
  MultiDotTable m;
  m.fn[0] = dot_by_block<Weights, 1>;
  m.fn[1] = dot_by_block<Weights, 2>;
  m.fn[2] = dot_by_block<Weights, 3>;
  m.fn[3] = dot_by_block<Weights, 4>;
  return m;
}

}  // namespace

MultiDotTable avx2_by_block_multi(TensorType w) {
  if (w == TensorType::Q4_0) return by_block_table<Q4_0Weights>();
  if (w == TensorType::Q8_0) return by_block_table<Q8_0Weights>();
  return {};
}

MultiDotTable avx2_multi_dot(TensorType w) {
  switch (w) {
    case TensorType::F32: return ENDLESS_MULTI_TABLE(dot_f32);
    case TensorType::F16: return ENDLESS_MULTI_TABLE(dot_f16);
    case TensorType::BF16: return ENDLESS_MULTI_TABLE(dot_bf16);
    default: return quantized_multi_table(w);
  }
}

VecDotFn avx2_vec_dot_fn(TensorType w) {
  switch (w) {
    case TensorType::F32: return ENDLESS_SINGLE(dot_f32);
    case TensorType::F16: return ENDLESS_SINGLE(dot_f16);
    case TensorType::BF16: return ENDLESS_SINGLE(dot_bf16);
    default: return quantized_single(w);
  }
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
