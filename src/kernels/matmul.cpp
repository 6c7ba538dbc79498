// Matrix products y = W x for the forward pass, built on vec_dot.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

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

// Fused only where written as fma: the product dw * da is rounded before it scales the sum.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
float dot_q4_0_by_block(int64_t n, const void* w_row, const void* act) {
  const auto* x = static_cast<const block_q4_0*>(w_row);
  const auto* y = static_cast<const block_q8_0*>(act);
  float acc = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) {
      sum += ((x[b].qs[j] & 0xF) - 8) * y[b].qs[j];
      sum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + 16];
    }
    acc = std::fma(static_cast<float>(sum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

float dot_q8_0_by_block(int64_t n, const void* w_row, const void* act) {
  const auto* x = static_cast<const block_q8_0*>(w_row);
  const auto* y = static_cast<const block_q8_0*>(act);
  float acc = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) sum += x[b].qs[j] * y[b].qs[j];
    acc = std::fma(static_cast<float>(sum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}
float dot_q4_K_by_block(int64_t n, const void* w_row, const void* act) {
  const auto* x = static_cast<const block_q4_K*>(w_row);
  const auto* y = static_cast<const block_q8_K*>(act);
  float acc = 0.0f;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sum = 0, mins = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t scale, min;
      detail::unpack_scale_min_k4(j, x[b].scales, &scale, &min);
      // Sub-block j: the low nibbles (j even) or high nibbles (j odd) of bytes 32 (j / 2) ...
      const uint8_t* q = x[b].qs + 32 * (j / 2);
      int32_t s = 0;
      for (int i = 0; i < 32; ++i) s += (j % 2 == 0 ? q[i] & 0xF : q[i] >> 4) * y[b].qs[32 * j + i];
      sum += scale * s;
      mins += min * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
    }
    acc = std::fma(static_cast<float>(sum), fp16_to_fp32(x[b].d) * y[b].d, acc);
    acc = std::fma(static_cast<float>(mins), -(fp16_to_fp32(x[b].dmin) * y[b].d), acc);
  }
  return acc;
}
float dot_q6_K_by_block(int64_t n, const void* w_row, const void* act) {
  const auto* x = static_cast<const block_q6_K*>(w_row);
  const auto* y = static_cast<const block_q8_K*>(act);
  float acc = 0.0f;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sum = 0;
    for (int g = 0; g < 16; ++g) {  // sixteen sub-blocks of 16
      int32_t s = 0;
      for (int i = 0; i < 16; ++i) {
        const int e = 16 * g + i;
        // Element e of a half of 128: four quarters of 32 share bytes of ql (low nibbles for
        // quarters 0, 1; high for 2, 3) and of qh (two bits each).
        const int half = e / 128, quarter = e % 128 / 32, l = e % 32;
        const uint8_t low = x[b].ql[64 * half + 32 * (quarter % 2) + l];
        const int q = ((quarter < 2 ? low & 0xF : low >> 4) | (((x[b].qh[32 * half + l] >> (2 * quarter)) & 3) << 4)) - 32;
        s += q * y[b].qs[e];
      }
      sum += x[b].scales[g] * s;
    }
    acc = std::fma(static_cast<float>(sum), fp16_to_fp32(x[b].d) * y[b].d, acc);
  }
  return acc;
}
#pragma GCC pop_options

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
