// Matrix products y = W x for the forward pass, built on vec_dot.
#include <algorithm>
#include <vector>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/error.h"

namespace endless::kernels {

namespace {

void check_shape(TensorType w_type, int64_t n_in) {
  if (!can_matmul(w_type)) fail("no matrix product for weights of type ", type_name(w_type));
  const int64_t bs = info(w_type).block_size;
  if (n_in <= 0 || n_in % bs != 0)
    fail("matrix rows of ", n_in, " elements are not a whole number of ", type_name(w_type),
         " blocks (", bs, ")");
}

}  // namespace

bool by_block(TensorType w, int64_t n_out) {
  if (w == TensorType::Q4_0) return n_out % 8 == 0;
  if (w == TensorType::Q8_0 || w == TensorType::Q4_K || w == TensorType::Q6_K)
    return n_out % 32 == 0 && detail::amx_arithmetic();
  return false;
}

VecDotFn by_block_dot_fn(TensorType w) {
  if (w == TensorType::Q4_0) return dot_q4_0_by_block;
  if (w == TensorType::Q8_0) return dot_q8_0_by_block;
  if (w == TensorType::Q4_K) return dot_q4_K_by_block;
  if (w == TensorType::Q6_K) return dot_q6_K_by_block;
  return nullptr;
}


size_t activations_size(TensorType w_type, int64_t n_in, int64_t n_tokens) {
  return row_size(vec_dot_type(w_type), n_in) * static_cast<size_t>(n_tokens);
}

void convert_activations(TensorType w_type, const float* x, int64_t n_in, int64_t n_tokens,
                         void* act) {
  const TensorType t = vec_dot_type(w_type);
  const size_t act_row = row_size(t, n_in);
  for (int64_t i = 0; i < n_tokens; ++i)
    quantize_row(t, x + i * n_in, static_cast<uint8_t*>(act) + i * act_row, n_in);
}

void matmul_rows(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const void* act,
                 int64_t n_tokens, float* y, int64_t row_begin, int64_t row_end) {
  const size_t w_row = row_size(w_type, n_in);
  const size_t act_row = row_size(vec_dot_type(w_type), n_in);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(act);
  // Tiles of tokens, so that a tile's activation rows stay in cache while every weight row of
  // the range meets them; within a tile each weight row is read once per group of up to
  // kMaxTokensPerDot tokens. A product of several tokens takes ggml's arithmetic for such
  // products (batch_dot_fn), one token vec_dot's.
  constexpr int64_t kTokenTile = 32;
  // Matrices multiplied by block (kernels.h: by_block) are so for every number of tokens.
  const bool batched = n_tokens >= 2;
  const bool blocks = by_block(w_type, n_out);
  const detail::MultiDotTable multi = blocks ? (active_isa() == Isa::scalar ? detail::MultiDotTable{}
                                                                         : detail::avx2_by_block_multi(w_type))
                                      : batched ? detail::multi_batch_dot(w_type)
                                                : detail::multi_dot(w_type);
  const VecDotFn single = blocks ? by_block_dot_fn(w_type) : batched ? batch_dot_fn(w_type) : vec_dot_fn(w_type);
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenTile) {
    const int64_t t1 = std::min(n_tokens, t0 + kTokenTile);
    for (int64_t o = row_begin; o < row_end; ++o) {
      const uint8_t* wr = wb + static_cast<size_t>(o) * w_row;
      if (!multi) {
        for (int64_t t = t0; t < t1; ++t)
          y[t * n_out + o] = single(n_in, wr, ab + static_cast<size_t>(t) * act_row);
        continue;
      }
      for (int64_t t = t0; t < t1; t += detail::kMaxTokensPerDot) {
        const int count = static_cast<int>(std::min<int64_t>(detail::kMaxTokensPerDot, t1 - t));
        float out[detail::kMaxTokensPerDot];
        multi.fn[count - 1](n_in, wr, ab + static_cast<size_t>(t) * act_row, act_row, out);
        for (int j = 0; j < count; ++j) y[(t + j) * n_out + o] = out[j];
      }
    }
  }
}

void matmul(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const float* x,
            int64_t n_tokens, float* y) {
  check_shape(w_type, n_in);
  if (n_out <= 0 || n_tokens <= 0) return;
  if (vec_dot_type(w_type) == TensorType::F32) {
    matmul_rows(w_type, w, n_in, n_out, x, n_tokens, y, 0, n_out);
    return;
  }
  std::vector<uint8_t> act(activations_size(w_type, n_in, n_tokens));
  convert_activations(w_type, x, n_in, n_tokens, act.data());
  matmul_rows(w_type, w, n_in, n_out, act.data(), n_tokens, y, 0, n_out);
}

}  // namespace endless::kernels
