// Faster matrix products for the forward pass, bit for bit those of matmul_rows (kernels.h).
//
// matmul_rows computes each output as one dot product of a weight row with a token's activations.
// gemm_rows computes the same numbers with register tiles: several weight rows against several
// tokens at once, each weight row unpacked once per tile instead of once per dot product, and the
// activations prepared once per call (converted to floats, or, for the 32-element quantized
// formats, laid out in pairs of tokens with their block sums ready, so that two dot products run
// in one 512-bit register). The float operations on each output are exactly those of its dot
// product, in the same order (gemm_test.cpp checks every result bit for bit against matmul_rows);
// only integer sums, which are exact, and the placement of independent dot products in vector
// lanes differ.
#pragma once

#include <cstdint>

#include "gguf/tensor_type.h"

namespace endless::kernels {

// Rows [row_begin, row_end) of y, exactly as matmul_rows(w_type, w, n_in, n_out, act, n_tokens,
// y, row_begin, row_end) computes them, and true; or false, leaving y alone, where there is no
// such path (weight types and instruction sets without one, row lengths it does not cover).
// Threads may call it on disjoint row ranges of the same product concurrently.
bool gemm_rows(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const void* act,
               int64_t n_tokens, float* y, int64_t row_begin, int64_t row_end);

// Whether gemm_rows has a path for this product (same arguments' shape), on this CPU.
bool has_gemm(TensorType w_type, int64_t n_in, int64_t n_tokens);

// Row ranges split between threads are best multiples of this (whole register tiles).
inline constexpr int64_t kGemmRowAlign = 16;

}  // namespace endless::kernels
