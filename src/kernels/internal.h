// Declarations shared by the kernels' implementation files; not part of the public API.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace endless::kernels::detail {

// Rounds to the nearest integer, ties to even, the way ggml's K-quant code does it: adding
// 1.5 * 2^23 puts the integer in the low mantissa bits. Valid for |x| < 2^22.
inline int nearest_int(float x) {
  const float shifted = x + 12582912.f;
  uint32_t bits;
  static_assert(sizeof bits == sizeof shifted);
  __builtin_memcpy(&bits, &shifted, 4);
  return static_cast<int>(bits & 0x007fffffu) - 0x00400000;
}

// Unpacks scale j and min j (0..7) of a Q4_K / Q5_K block's 12 packed bytes: the first four
// pairs are the low six bits of bytes 0-3 / 4-7; the last four take their low four bits from
// bytes 8-11 and their top two bits from the spare top bits of bytes 0-7.
inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Unpacks the sixteen 6-bit scales of a Q3_K block (still biased by 32).
inline void unpack_scales_q3_K(const uint8_t* packed, int8_t out[16]) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>(low | (high << 4));
  }
}

// Activation quantizers with ggml x86 semantics (see quants.cpp).
void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n);
void quantize_row_q8_1(const float* x, block_q8_1* y, int64_t n);
void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n);

// Dots of one weight row with `count` activation rows at once (act, act + act_stride, ...),
// writing out[0..count). Reading the weights once for several tokens is what makes prefill
// faster than token-by-token; each row's result is bit-identical to the single-row vec_dot.
inline constexpr int kMaxTokensPerDot = 4;
using MultiDotFn = void (*)(int64_t n, const void* w_row, const void* act, size_t act_stride,
                            float* out);
struct MultiDotTable {
  MultiDotFn fn[kMaxTokensPerDot] = {};  // fn[k] handles k + 1 activation rows
  explicit operator bool() const { return fn[0] != nullptr; }
};

// Fast-path tables: the kernels of w for that instruction set, or null / empty where it has
// none (the caller then falls back to a lower level). Defined in dot_avx2.cpp / dot_avx512.cpp.
VecDotFn avx2_vec_dot_fn(TensorType w);
VecDotFn avx512_vec_dot_fn(TensorType w);
MultiDotTable avx2_multi_dot(TensorType w);
MultiDotTable avx512_multi_dot(TensorType w);
// Q4_0 / Q8_0 by block (kernels::by_block) for up to kMaxTokensPerDot tokens; empty for other types.
MultiDotTable avx2_by_block_multi(TensorType w);
// The kernels of products of two or more tokens where they differ from vec_dot (F32, F16, BF16
// under AVX-512: llamafile's tinyBLAS order); null / empty elsewhere.
VecDotFn avx512_gemm_dot_fn(TensorType w);
MultiDotTable avx512_multi_gemm(TensorType w);
// The multi-row kernels for the active instruction set, for a product of one token (vec_dot's
// arithmetic) or of several (batch_dot_fn's); empty where only single-row dots exist.
MultiDotTable multi_dot(TensorType w);
MultiDotTable multi_batch_dot(TensorType w);

// Whether the running CPU has the features each fast path was compiled for.
bool cpu_has_avx2();
bool cpu_has_avx512();
// AMX with int8 tiles, and the kernel's leave to use their state (Linux: arch_prctl); false
// where ENDLESS_AMX=0.
bool cpu_has_amx_int8();
// Whether Q8_0 products follow llama.cpp's AMX backend (by_block): by default where
// cpu_has_amx_int8(); set_amx_arithmetic decides otherwise (the tests run both, on any CPU: only
// the AMX tiles themselves need one).
bool amx_arithmetic();
void set_amx_arithmetic(bool on);
// set_amx_arithmetic for a scope (the tests), restored at its end.
class ScopedAmxArithmetic {
 public:
  explicit ScopedAmxArithmetic(bool on) : saved_(amx_arithmetic()) { set_amx_arithmetic(on); }
  ~ScopedAmxArithmetic() { set_amx_arithmetic(saved_); }
  ScopedAmxArithmetic(const ScopedAmxArithmetic&) = delete;
  ScopedAmxArithmetic& operator=(const ScopedAmxArithmetic&) = delete;

 private:
  bool saved_;
};
// Whether BF16 prefill tiles compute VDPBF16PS's arithmetic with FMAs (gemm_avx512.cpp): by
// default on Intel CPUs, whose VDPBF16PS runs at half the FMA's rate; ENDLESS_BF16_FMA=0|1 or
// set_bf16_by_fma decide otherwise (the tests run both).
bool bf16_by_fma();
void set_bf16_by_fma(bool on);

// ggml's exp polynomial (ggml_v_expf) for one float, and _mm512_reduce_add_ps's order of adding
// sixteen floats; scalar emulations, bit-identical to the vector code (activations.cpp).
float expf_ggml(float x);
float reduce16(const float* v);
// The AVX-512 versions of silu_row, softmax_exp_row and max_row (dot_avx512.cpp).
void avx512_silu_row(const float* x, float* y, int64_t n);
double avx512_softmax_exp_row(const float* x, float* y, int64_t n, float max);
float avx512_max_row(const float* x, int64_t n);

// Vectorized half conversions (F16C); used by the *_row conversions when the CPU has them.
void avx2_fp16_to_fp32(const uint16_t* x, float* y, int64_t n);
void avx2_fp32_to_fp16(const float* x, uint16_t* y, int64_t n);

}  // namespace endless::kernels::detail
