// Scalar reference dot products, one weight row against activations in vec_dot_type. They are
// written for reading: each block is unpacked to plain integers first, then multiplied out. The
// integer sums are exactly ggml's; the float combination per block follows ggml's generic code.
// Float rows accumulate in double, as ggml's scalar fallback does.
#include <cmath>
#include <cstring>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

// Never fuse a multiply and an add into one rounding: the results must not depend on whether
// the build targets a CPU with FMA (ggml-base, whose reference code this mirrors, has none).
#pragma GCC optimize("fp-contract=off")

namespace endless::kernels::ref {
namespace {

float dot_f32(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const float*>(vx);
  const auto* y = static_cast<const float*>(vy);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * y[i]);
  return static_cast<float>(sum);
}

float dot_f16(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const uint16_t*>(vx);
  const auto* y = static_cast<const uint16_t*>(vy);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
  return static_cast<float>(sum);
}

float dot_bf16(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const uint16_t*>(vx);
  const auto* y = static_cast<const uint16_t*>(vy);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
  return static_cast<float>(sum);
}

// ---------------------------------------------------------------------------------------------
// 32-element formats: unpack the weights' integers, then one integer dot per block.

int int_dot(const int8_t* a, const int8_t* b, int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Weight integers of one block, element order (signed for Q4_0/Q5_0, unsigned for _1 types).
void unpack_q4_0(const block_q4_0& b, int8_t q[32]) {
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>((b.qs[j] & 0xF) - 8);
    q[j + 16] = static_cast<int8_t>((b.qs[j] >> 4) - 8);
  }
}
void unpack_q4_1(const block_q4_1& b, int8_t q[32]) {
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>(b.qs[j] & 0xF);
    q[j + 16] = static_cast<int8_t>(b.qs[j] >> 4);
  }
}
template <typename Block>
void unpack_q5(const Block& b, int8_t q[32], int bias) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>(((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - bias);
    q[j + 16] = static_cast<int8_t>(((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - bias);
  }
}

float dot_q4_0(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q4_0*>(vx);
  const auto* y = static_cast<const block_q8_0*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int8_t q[32];
    unpack_q4_0(x[i], q);
    const int sumi = int_dot(q, y[i].qs, 32);
    sum += sumi * fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d);
  }
  return sum;
}

float dot_q4_1(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q4_1*>(vx);
  const auto* y = static_cast<const block_q8_1*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int8_t q[32];
    unpack_q4_1(x[i], q);
    const int sumi = int_dot(q, y[i].qs, 32);
    // The min term uses the activations' precomputed d * sum(qs).
    sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * sumi +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

float dot_q5_0(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q5_0*>(vx);
  const auto* y = static_cast<const block_q8_0*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int8_t q[32];
    unpack_q5(x[i], q, 16);
    const int sumi = int_dot(q, y[i].qs, 32);
    sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * sumi;
  }
  return sum;
}

float dot_q5_1(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q5_1*>(vx);
  const auto* y = static_cast<const block_q8_1*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    int8_t q[32];
    unpack_q5(x[i], q, 0);
    const int sumi = int_dot(q, y[i].qs, 32);
    sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * sumi +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

float dot_q8_0(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q8_0*>(vx);
  const auto* y = static_cast<const block_q8_0*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / 32; ++i) {
    const int sumi = int_dot(x[i].qs, y[i].qs, 32);
    sum += sumi * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// K-quants: unpack a super-block to 256 integers and its sub-block scales (and mins), then
// sum scale * dot per sub-block in integers. The mins are applied through the activations'
// precomputed sums of 16 (bsums).

// Q2_K: q in [0,3], 16 sub-blocks of 16 with 4-bit scale and min.
void unpack_q2_K(const block_q2_K& b, int8_t q[256]) {
  for (int half = 0; half < 2; ++half)
    for (int shift = 0; shift < 4; ++shift)
      for (int l = 0; l < 32; ++l)
        q[128 * half + 32 * shift + l] = static_cast<int8_t>((b.qs[32 * half + l] >> (2 * shift)) & 3);
}

// Q3_K: q in [-4,3], 16 sub-blocks of 16 with 6-bit scales biased by 32.
void unpack_q3_K(const block_q3_K& b, int8_t q[256]) {
  for (int half = 0; half < 2; ++half)
    for (int shift = 0; shift < 4; ++shift)
      for (int l = 0; l < 32; ++l) {
        const int j = 128 * half + 32 * shift + l;
        const int low = (b.qs[32 * half + l] >> (2 * shift)) & 3;
        const bool high = (b.hmask[l] >> (4 * half + shift)) & 1;
        q[j] = static_cast<int8_t>(low - (high ? 0 : 4));
      }
}

// Q4_K / Q5_K: q in [0,15] / [0,31], 8 sub-blocks of 32.
void unpack_q4_K(const block_q4_K& b, int8_t q[256]) {
  for (int k = 0; k < 4; ++k)
    for (int l = 0; l < 32; ++l) {
      q[64 * k + l] = static_cast<int8_t>(b.qs[32 * k + l] & 0xF);
      q[64 * k + 32 + l] = static_cast<int8_t>(b.qs[32 * k + l] >> 4);
    }
}
void unpack_q5_K(const block_q5_K& b, int8_t q[256]) {
  for (int k = 0; k < 4; ++k)
    for (int l = 0; l < 32; ++l) {
      q[64 * k + l] = static_cast<int8_t>((b.qs[32 * k + l] & 0xF) | (((b.qh[l] >> (2 * k)) & 1) << 4));
      q[64 * k + 32 + l] =
          static_cast<int8_t>((b.qs[32 * k + l] >> 4) | (((b.qh[l] >> (2 * k + 1)) & 1) << 4));
    }
}

// Q6_K: q in [-32,31], 16 sub-blocks of 16 with signed 8-bit scales.
void unpack_q6_K(const block_q6_K& b, int8_t q[256]) {
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    int8_t* out = q + 128 * half;
    for (int l = 0; l < 32; ++l) {
      out[l] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      out[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      out[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      out[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

float dot_q2_K(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q2_K*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int8_t q[256];
    unpack_q2_K(x[i], q);
    int isum = 0, summs = 0;
    for (int j = 0; j < 16; ++j) {
      isum += (x[i].scales[j] & 0xF) * int_dot(q + 16 * j, y[i].qs + 16 * j, 16);
      summs += (x[i].scales[j] >> 4) * y[i].bsums[j];
    }
    const float dall = y[i].d * fp16_to_fp32(x[i].d);
    const float dmin = y[i].d * fp16_to_fp32(x[i].dmin);
    sum += dall * isum - dmin * summs;
  }
  return sum;
}

float dot_q3_K(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q3_K*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int8_t q[256], scales[16];
    unpack_q3_K(x[i], q);
    detail::unpack_scales_q3_K(x[i].scales, scales);
    int isum = 0;
    for (int j = 0; j < 16; ++j) isum += (scales[j] - 32) * int_dot(q + 16 * j, y[i].qs + 16 * j, 16);
    sum += fp16_to_fp32(x[i].d) * y[i].d * isum;
  }
  return sum;
}

template <typename Block, void (*Unpack)(const Block&, int8_t*)>
float dot_q45_K(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const Block*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int8_t q[256];
    Unpack(x[i], q);
    int isum = 0, summs = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t scale, min;
      detail::unpack_scale_min_k4(j, x[i].scales, &scale, &min);
      isum += scale * int_dot(q + 32 * j, y[i].qs + 32 * j, 32);
      summs += min * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    const float d = fp16_to_fp32(x[i].d) * y[i].d;
    const float dmin = fp16_to_fp32(x[i].dmin) * y[i].d;
    sum += d * isum;
    sum -= dmin * summs;
  }
  return sum;
}

float dot_q6_K(int64_t n, const void* vx, const void* vy) {
  const auto* x = static_cast<const block_q6_K*>(vx);
  const auto* y = static_cast<const block_q8_K*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int8_t q[256];
    unpack_q6_K(x[i], q);
    int isum = 0;
    for (int j = 0; j < 16; ++j) isum += x[i].scales[j] * int_dot(q + 16 * j, y[i].qs + 16 * j, 16);
    sum += fp16_to_fp32(x[i].d) * y[i].d * isum;
  }
  return sum;
}

}  // namespace

VecDotFn vec_dot_fn(TensorType w) {
  switch (w) {
    case TensorType::F32: return dot_f32;
    case TensorType::F16: return dot_f16;
    case TensorType::BF16: return dot_bf16;
    case TensorType::Q4_0: return dot_q4_0;
    case TensorType::Q4_1: return dot_q4_1;
    case TensorType::Q5_0: return dot_q5_0;
    case TensorType::Q5_1: return dot_q5_1;
    case TensorType::Q8_0: return dot_q8_0;
    case TensorType::Q2_K: return dot_q2_K;
    case TensorType::Q3_K: return dot_q3_K;
    case TensorType::Q4_K: return dot_q45_K<block_q4_K, unpack_q4_K>;
    case TensorType::Q5_K: return dot_q45_K<block_q5_K, unpack_q5_K>;
    case TensorType::Q6_K: return dot_q6_K;
    default: return nullptr;
  }
}

float vec_dot(TensorType w, int64_t n, const void* w_row, const void* act) {
  const VecDotFn fn = vec_dot_fn(w);
  if (!fn) fail("no dot product for weights of type ", type_name(w));
  return fn(n, w_row, act);
}

}  // namespace endless::kernels::ref

// ---------------------------------------------------------------------------------------------
// The by-block dot products (kernels.h: by_block), on the same unpacked integers: each block's
// (K-quants: super-block's) sum exact, then the fused multiply-adds written as std::fma, block
// after block from zero; the product dw * da is rounded before it scales the sum.
namespace endless::kernels {
namespace {

const int8_t* values(const block_q4_0& b, int8_t q[32]) {
  ref::unpack_q4_0(b, q);
  return q;
}
const int8_t* values(const block_q8_0& b, int8_t*) { return b.qs; }

template <typename Block>
float dot_32_by_block(int64_t n, const void* w_row, const void* act) {
  const auto* x = static_cast<const Block*>(w_row);
  const auto* y = static_cast<const block_q8_0*>(act);
  float acc = 0.0f;
  for (int64_t b = 0; b < n / 32; ++b) {
    int8_t q[32];
    const int32_t sum = ref::int_dot(values(x[b], q), y[b].qs, 32);
    acc = std::fma(static_cast<float>(sum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

}  // namespace

float dot_q4_0_by_block(int64_t n, const void* w_row, const void* act) {
  return dot_32_by_block<block_q4_0>(n, w_row, act);
}

float dot_q8_0_by_block(int64_t n, const void* w_row, const void* act) {
  return dot_32_by_block<block_q8_0>(n, w_row, act);
}

float dot_q4_K_by_block(int64_t n, const void* w_row, const void* act) {
  const auto* x = static_cast<const block_q4_K*>(w_row);
  const auto* y = static_cast<const block_q8_K*>(act);
  float acc = 0.0f;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int8_t q[256];
    ref::unpack_q4_K(x[b], q);
    int32_t sum = 0, mins = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t scale, min;
      detail::unpack_scale_min_k4(j, x[b].scales, &scale, &min);
      sum += scale * ref::int_dot(q + 32 * j, y[b].qs + 32 * j, 32);
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
    int8_t q[256];
    ref::unpack_q6_K(x[b], q);  // values - 32
    int32_t sum = 0;
    for (int g = 0; g < 16; ++g) sum += x[b].scales[g] * ref::int_dot(q + 16 * g, y[b].qs + 16 * g, 16);
    acc = std::fma(static_cast<float>(sum), fp16_to_fp32(x[b].d) * y[b].d, acc);
  }
  return acc;
}

}  // namespace endless::kernels
