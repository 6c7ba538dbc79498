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
#include <cstdlib>
#include <memory>

#include "gguf/tensor_type.h"

namespace endless::kernels {

// A product's activations laid out for the tiles (converted to floats, or the quantized blocks in
// pairs of tokens with their sums ready), once per product on one thread, then read by every
// thread's gemm_rows calls; the buffer is kept for the next product.
class GemmInput {
 public:
  // act: n_tokens rows of n_in in the weights' vec_dot_type (convert_activations). act must
  // stay valid while the GemmInput is used. by_block_only: every product to be read with this
  // input is multiplied by block (kernels.h: by_block), so the layout the other Q4_0 / Q8_0
  // products read (token pairs) is left out; gemm_rows then declines those others (matmul_rows
  // gives their bits).
  void prepare(TensorType w_type, const void* act, int64_t n_in, int64_t n_tokens, bool by_block_only = false);
  // Whether products that are not multiplied by block can read this input.
  bool has_pairs() const { return has_pairs_; }

  const void* act() const { return act_; }
  const void* prepared() const { return prepared_; }
  TensorType w_type() const { return w_type_; }
  int64_t n_in() const { return n_in_; }
  int64_t n_tokens() const { return n_tokens_; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  const void* act_ = nullptr;
  const void* prepared_ = nullptr;
  TensorType w_type_ = TensorType::F32;
  int64_t n_in_ = 0;
  int64_t n_tokens_ = 0;
  bool has_pairs_ = false;
  std::unique_ptr<uint8_t, Free> buffer_;  // 64-byte aligned
  size_t capacity_ = 0;
};

// Rows [row_begin, row_end) of y for activations prepared in `in` (for this w_type and n_in);
// false where there is no tiled path. Threads may call it concurrently on disjoint row ranges.
// packed: null, or the same matrix in the tiles' own layout (pack_weights), read instead of w
// where the ranges allow (whole groups of its rows); the results are the same bits.
bool gemm_rows(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const GemmInput& in,
               float* y, int64_t row_begin, int64_t row_end, const void* packed = nullptr);

// A matrix rearranged for the tiles of this CPU, made once when a model is loaded: the tiles then
// read their registers straight from memory, one stream, instead of gathering and transposing
// each block of rows from the file's row-major layout (Q4_0 under AVX-512: 1.3x the decode
// speed on the 254M model, docs/benchmarks.md). Matrices multiplied by block (kernels.h:
// by_block) have one. packed_weights_size is 0 where there is no such layout (other matrices,
// other instruction sets, row counts not a multiple of 16); otherwise the bytes
// (as many as the matrix has) that pack_weights writes to `out` (64-byte aligned).
size_t packed_weights_size(TensorType w_type, int64_t n_in, int64_t n_out);
void pack_weights(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, void* out);

// Whether a matrix of this type at this address is better read from a copy that starts on a
// 64-byte boundary: the AVX-512 tiles load F32 and BF16 rows 64 bytes at a time, and GGUF files
// align tensors to 32 bytes, so in a file every such load may span two cache lines (the F32
// prefill tile, one thread: 43 GMAC/s so, 55-70 aligned).
bool wants_aligned_copy(TensorType w_type, const void* data);

// Rows [row_begin, row_end) of y, exactly as matmul_rows(w_type, w, n_in, n_out, act, n_tokens,
// y, row_begin, row_end) computes them, and true; or false, leaving y alone, where there is no
// such path (weight types and instruction sets without one, row lengths it does not cover).
// Threads may call it on disjoint row ranges of the same product concurrently; each prepares the
// activations itself (a thread-local GemmInput), so a product split over many calls is better
// served by the GemmInput overload.
bool gemm_rows(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const void* act,
               int64_t n_tokens, float* y, int64_t row_begin, int64_t row_end);

// Whether gemm_rows has a path for this product (same arguments' shape), on this CPU.
bool has_gemm(TensorType w_type, int64_t n_in, int64_t n_tokens);

// Row ranges split between threads are best multiples of this (whole register tiles).
inline constexpr int64_t kGemmRowAlign = 16;
// Up to this many tokens, one register tile covers them all, so each weight row is read once
// per product (no block of rows is kept in cache for further token tiles).
inline constexpr int64_t kGemmOnePassTokens = 8;

// The tiles of a product of more tokens than that take the rows in blocks of about this many
// bytes of weights, which stay in the L2 cache while every token tile passes over them.
inline constexpr size_t kGemmRowBlockBytes = 256 * 1024;

}  // namespace endless::kernels
