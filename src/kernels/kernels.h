// Numeric kernels: ggml's block layouts, (de)quantization, activation quantization, dot products
// and matrix-vector products. Everything here reproduces llama.cpp's CPU backend (commit c392e509)
// bit for bit: layouts, quantizers and integer parts everywhere; under AVX-512 also the float
// order of every dot product, as ggml compiles for such a CPU (-march=native): vec_dot for a
// product of one token, llamafile's tinyBLAS for products of several tokens of F32, F16 and BF16
// rows (see batch_dot_fn). The scalar reference and the AVX2 float rows differ by rounding only.
// (Not reproduced: ggml's repacked Q4_0 kernels, which llama.cpp uses for Q4_0 matrices whose row
// count is a multiple of 8; they differ from vec_dot by rounding.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gguf/tensor_type.h"

namespace endless::kernels {

// ---------------------------------------------------------------------------------------------
// Block layouts, byte for byte as ggml stores them in GGUF files. Half-precision fields are raw
// IEEE half bits (uint16_t); convert with fp16_to_fp32 from util/fp16.h.

inline constexpr int kQK4_0 = 32;
inline constexpr int kQK4_1 = 32;
inline constexpr int kQK5_0 = 32;
inline constexpr int kQK5_1 = 32;
inline constexpr int kQK8_0 = 32;
inline constexpr int kQK8_1 = 32;
inline constexpr int kQK_K = 256;      // super-block size of the K-quants
inline constexpr int kKScaleSize = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

struct block_q4_0 {
  uint16_t d;             // scale
  uint8_t qs[kQK4_0 / 2];  // element j in the low nibble of qs[j], element j+16 in the high one
};
struct block_q4_1 {
  uint16_t d;  // scale
  uint16_t m;  // minimum
  uint8_t qs[kQK4_1 / 2];
};
struct block_q5_0 {
  uint16_t d;
  uint8_t qh[4];  // fifth bit of each element (bit j of the little-endian word)
  uint8_t qs[kQK5_0 / 2];
};
struct block_q5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};
struct block_q8_0 {
  uint16_t d;
  int8_t qs[kQK8_0];
};
struct block_q8_1 {
  uint16_t d;
  uint16_t s;  // d * sum(qs)
  int8_t qs[kQK8_1];
};
struct block_q2_K {
  uint8_t scales[kQK_K / 16];  // low nibble: scale, high nibble: min, per 16 elements
  uint8_t qs[kQK_K / 4];
  uint16_t d;     // super-scale of the scales
  uint16_t dmin;  // super-scale of the mins
};
struct block_q3_K {
  uint8_t hmask[kQK_K / 8];  // high bit of each element
  uint8_t qs[kQK_K / 4];     // low two bits
  uint8_t scales[12];        // sixteen 6-bit scales
  uint16_t d;
};
struct block_q4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];  // eight 6-bit scales and eight 6-bit mins
  uint8_t qs[kQK_K / 2];
};
struct block_q5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
struct block_q6_K {
  uint8_t ql[kQK_K / 2];       // low four bits
  uint8_t qh[kQK_K / 4];       // high two bits
  int8_t scales[kQK_K / 16];  // 8-bit scales per 16 elements
  uint16_t d;
};
// Activations for the K-quant dot products; never stored in files.
struct block_q8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of qs in groups of 16
};

static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q8_1) == 36);
static_assert(sizeof(block_q2_K) == 84);
static_assert(sizeof(block_q3_K) == 110);
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q5_K) == 176);
static_assert(sizeof(block_q6_K) == 210);
static_assert(sizeof(block_q8_K) == 292);

// ---------------------------------------------------------------------------------------------
// Capabilities.

// Types dequantize_row can expand to floats.
bool can_dequantize(TensorType t);
// Types quantize_row can produce.
bool can_quantize(TensorType t);
// Weight types vec_dot and matmul accept.
bool can_matmul(TensorType w);
// The layout activations must be in for a dot product with weights of type w (ggml's
// vec_dot_type): F32->F32, F16->F16, BF16->BF16, Q4_0/Q5_0/Q8_0->Q8_0, Q4_1/Q5_1->Q8_1,
// K-quants->Q8_K. Throws Error for a type without a dot product.
TensorType vec_dot_type(TensorType w);

// ---------------------------------------------------------------------------------------------
// Conversions. n is a number of elements and must be a multiple of the type's block size
// (Error otherwise).

// Expands n elements of type t to floats.
void dequantize_row(TensorType t, const void* x, float* y, int64_t n);

// Converts n floats into type t's layout. For the activation types (F32, F16, BF16, Q8_0, Q8_1,
// Q8_K) the result is bit-exact with what ggml's x86 CPU backend feeds its dot products (Q8_0 and
// Q8_1 round half to even, as its AVX path does). For the weight types (Q4_0, Q4_1, Q5_0, Q5_1,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) it equals ggml's reference quantizers without importance matrix,
// i.e. what llama-quantize writes.
void quantize_row(TensorType t, const float* x, void* y, int64_t n);

// Quantizes n floats into type t exactly as llama-quantize writes weights (ggml's reference
// quantizers, no importance matrix). Differs from quantize_row only for Q8_0 and Q8_1, whose
// reference rounds half away from zero and scales by 1/d instead of 127/amax.
void quantize_weights_row(TensorType t, const float* x, void* y, int64_t n);

// Bulk half/bfloat16 conversions (vectorized where the CPU allows), bit-exact with util/fp16.h.
void fp16_to_fp32_row(const uint16_t* x, float* y, int64_t n);
void fp32_to_fp16_row(const float* x, uint16_t* y, int64_t n);
void bf16_to_fp32_row(const uint16_t* x, float* y, int64_t n);
void fp32_to_bf16_row(const float* x, uint16_t* y, int64_t n);

// ---------------------------------------------------------------------------------------------
// Dot products.

// Dot product of one weight row of type w with n activations already in vec_dot_type(w).
// n must be a multiple of w's block size (not checked here: this is the inner loop).
float vec_dot(TensorType w, int64_t n, const void* w_row, const void* act);

// The same as a function pointer, for inner loops that should not re-dispatch. Null when w has no
// dot product.
using VecDotFn = float (*)(int64_t n, const void* w_row, const void* act);
VecDotFn vec_dot_fn(TensorType w);

// The dot product matmul uses for each element of a product of two or more tokens. ggml sends
// such products of F32, F16 and BF16 rows through llamafile's tinyBLAS, which keeps one
// accumulator per element (for rows whose length is a multiple of its step; others still go
// through vec_dot), so under AVX-512 these types differ from vec_dot_fn by rounding; every other
// case is vec_dot_fn.
VecDotFn batch_dot_fn(TensorType w);

// Quantized matrices multiplied "by block": each block's integer dot product exactly, then
// acc = fma(float(sum), dw * da, acc), block after block from zero. That is how llama.cpp's x86
// CPU backend multiplies the matrices it moves into layouts of its own when it loads a model:
//  - Q4_0 whose row count is a multiple of 8, on every CPU with AVX2 (its repacked q4_0_8x8);
//  - Q8_0, Q4_K and Q6_K whose row count is a multiple of 32, on CPUs with AMX-INT8 (its AMX
//    backend, which takes such matrices before anything else and multiplies them so in every
//    product: AMX tiles for batches, its VNNI kernel for one token). ENDLESS_AMX=0 makes a CPU
//    count as one without. The K-quants' blocks are their super-blocks of 256: the sum is that of
//    the sub-block sums times their scales (Q6_K's values minus 32); Q4_K's mins come after it,
//    acc = fma(float(sum of mins times the activations' sums of 32), -(dmin * da), acc).
// Every other matrix keeps ggml's vec_dot order (eight partial sums per block). matmul_rows and
// gemm_rows follow this rule for every number of tokens, so a row's result does not depend on how
// many tokens share the product.
bool by_block(TensorType w, int64_t n_out);
// The scalar by-block dot products (the reference the fast paths are tested against), and the
// one for w (null for other types).
float dot_q4_0_by_block(int64_t n, const void* w_row, const void* act);
float dot_q8_0_by_block(int64_t n, const void* w_row, const void* act);
float dot_q4_K_by_block(int64_t n, const void* w_row, const void* act);
float dot_q6_K_by_block(int64_t n, const void* w_row, const void* act);
VecDotFn by_block_dot_fn(TensorType w);

namespace ref {
// Plain scalar versions, written to be read; the fast paths are tested against them.
float vec_dot(TensorType w, int64_t n, const void* w_row, const void* act);
VecDotFn vec_dot_fn(TensorType w);
}  // namespace ref

// Which instruction set vec_dot and matmul use.
enum class Isa { scalar, avx2, avx512 };
std::string_view isa_name(Isa isa);  // "scalar", "avx2", "avx512"
// The best this CPU supports.
Isa best_isa();
// The one in use: best_isa(), unless lowered by the ENDLESS_ISA environment variable (read once,
// at first use; "scalar", "avx2" or "avx512") or by set_isa.
Isa active_isa();
// Selects an instruction set (for tests and benchmarks). Throws Error if the CPU lacks it.
void set_isa(Isa isa);
// Parses "scalar" / "avx2" / "avx512"; throws Error naming the value otherwise.
Isa parse_isa(std::string_view name);

// ---------------------------------------------------------------------------------------------
// Matrix products for the forward pass. W is row-major with n_out rows of n_in elements of type
// w_type (ggml's layout: row o at w + o * row_size(w_type, n_in)); x holds n_tokens rows of n_in
// floats; y receives n_tokens rows of n_out floats: y[t*n_out + o] = dot(W row o, x row t).

// Bytes needed to hold n_tokens rows of n_in activations converted for w_type.
size_t activations_size(TensorType w_type, int64_t n_in, int64_t n_tokens);
// Converts x (n_tokens rows of n_in floats) into vec_dot_type(w_type), rows back to back.
void convert_activations(TensorType w_type, const float* x, int64_t n_in, int64_t n_tokens,
                         void* act);

// Rows [row_begin, row_end) of y from already converted activations. Threads may call this on
// disjoint row ranges of the same product concurrently.
void matmul_rows(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const void* act,
                 int64_t n_tokens, float* y, int64_t row_begin, int64_t row_end);

// The whole product, single-threaded: converts the activations once, then computes every row.
// Throws Error if w_type has no dot product or n_in is not a multiple of its block size.
void matmul(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const float* x,
            int64_t n_tokens, float* y);

// ---------------------------------------------------------------------------------------------
// Elementwise functions of the forward pass, as ggml's AVX-512 build computes them (bit for bit on
// every instruction set): exp by ggml's own polynomial sixteen elements at a time, libm's expf for
// the elements past the last whole group of sixteen.

// y[i] = x[i] / (1 + exp(-x[i])), as ggml_vec_silu_f32. x and y may be the same array.
void silu_row(const float* x, float* y, int64_t n);

// y[i] = exp(x[i] - max), returning their sum as ggml_vec_soft_max_f32 forms it: each group of
// sixteen reduced in float (in _mm512_reduce_add_ps's order) and added in double, then the rest
// one by one. Elements of x that are -inf give exactly 0.
double softmax_exp_row(const float* x, float* y, int64_t n, float max);

// The largest element of x, as std::max taken element by element from -inf: NaNs are skipped,
// and -inf for n = 0. (Of +0 and -0 either may come back: x - max, and so softmax, is the same.)
float max_row(const float* x, int64_t n);

}  // namespace endless::kernels
