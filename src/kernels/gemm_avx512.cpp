// gemm_rows (gemm.h) for AVX-512 (F, BW, VL, DQ, VNNI, BF16): register-tiled products that give
// exactly the numbers of matmul_rows. Called only after the CPU was checked (cpu_has_avx512).
//
// What each path must reproduce (dot_avx512.cpp, simd_dots.inc):
//  - F32 / F16 / BF16, two or more tokens (llamafile's tinyBLAS order): per output one 16-lane
//    accumulator, acc = fma(w[i..i+16], x[i..i+16], acc) over the row (VDPBF16PS over steps of 32
//    for BF16), then _mm512_reduce_add_ps. A tile keeps RM x RN such accumulators.
//  - F32 / F16, one token (ggml's vec_dot order): four 16-lane accumulators over each 64
//    elements, (a0 + a2) + (a1 + a3), then _mm512_reduce_add_ps; several rows share the loads.
//    BF16, one token: two VDPBF16PS accumulators (alternate 32s of each 64), reduced, added in
//    double.
//  - Q4_0 / Q8_0 (activations Q8_0): per output an 8-lane float accumulator; per block the eight
//    int32 lanes of exact sums of four products, then acc = fma(dw * dy, float(lanes), acc); at
//    the end the 8-lane horizontal sum plus 0.0f. The lanes are computed here as
//    VPDPBUSD(unsigned weights, activations) - offset * (sums of four activations), which is the
//    same integer; two outputs share one 512-bit register (two tokens of one row in prefill, two
//    rows of one token in decode), each in its own eight lanes, so nothing mixes.
//  - Q4_K / Q6_K (activations Q8_K), where not by block: ggml's eight int32 lanes per super-block
//    (below, at the K-quant tiles).
//  - By block (kernels.h: by_block; Q4_0 always, Q8_0 / Q4_K / Q6_K where the CPU has AMX): per
//    output one float, per block (K-quants: super-block) acc = fma(float(exact integer sum),
//    dw * dy, acc) from zero (Q4_K then its mins' step); sixteen rows in the lanes of a register,
//    or AMX tiles of 16 tokens x 16 rows.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/aligned.h"
#include "util/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")  // fused only where written as FMA
#pragma GCC target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16")

namespace endless::kernels::detail {
namespace {

// The shared 256-bit helpers (hsum, half_to_float, the K-quant scale unpacking, ...), so that the
// tiles use the very code of the dot products they must agree with.
#define ENDLESS_SIMD_VNNI 1
#include "kernels/simd_dots.inc"
#undef ENDLESS_SIMD_VNNI

// Rows of a row block are chosen so that the block's weights stay in the L2 cache while every
// token tile passes over them.
constexpr size_t kRowBlockBytes = kGemmRowBlockBytes;

int64_t row_block(size_t row_bytes, int rm) {
  const int64_t rows = static_cast<int64_t>(kRowBlockBytes / std::max<size_t>(row_bytes, 1));
  return std::max<int64_t>(rm, rows / rm * rm);
}

// VPDPBUSD of sixteen lanes of weights against four activation bytes broadcast to every lane
// straight from memory (EVEX {1to16}). GCC 12 loads _mm512_set1_epi32 of them into a register
// first: one more micro-op for each VPDPBUSD, and the by-block tiles issue one per four products
// (16 Q4_0 rows x 8 tokens, one thread, best of 40 alternating runs: 62 -> 48 TSC cycles per
// block, 47 with two chains of sums per token).
inline __m512i dpbusd_bcast(__m512i sum, __m512i w, const int8_t* four) {
  using Word = int32_t __attribute__((may_alias, aligned(1)));
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(sum) : "v"(w), "m"(*reinterpret_cast<const Word*>(four)));
  return sum;
}

// Decode reads each weight once, so it is a read of memory, and the rows of one pass (lying next
// to each other) are read as several short streams side by side, which the hardware prefetchers
// follow poorly: the Q4_0 product read 14 GB/s from memory with one thread against 30 GB/s with
// this. So each step of a pass also prefetches its share of the bytes of the pass after it,
// front to back.
class PassPrefetch {
 public:
  PassPrefetch() = default;
  // [begin, end): the next pass's bytes; n_steps: the steps of this pass.
  PassPrefetch(const void* begin, const void* end, int64_t n_steps)
      : p_(static_cast<const char*>(begin)), end_(static_cast<const char*>(end)) {
    if (p_ < end_ && n_steps > 0) per_step_ = ((end_ - p_) / n_steps + 63) & ~int64_t{63};
  }
  void step() {
    for (int64_t o = 0; o < per_step_ && p_ < end_; o += 64, p_ += 64) _mm_prefetch(p_, _MM_HINT_T0);
  }

 private:
  const char* p_ = nullptr;
  const char* end_ = nullptr;
  int64_t per_step_ = 0;
};

// The bytes of rows [r, r + n) clipped to [.., r_end) of a matrix of rows of row_bytes.
inline PassPrefetch next_pass(const void* base, size_t row_bytes, int64_t r, int64_t n, int64_t r_end,
                              int64_t n_steps) {
  const auto* b = static_cast<const char*>(base);
  const int64_t e = std::min(r + n, r_end);
  if (r >= e) return {};
  return PassPrefetch(b + r * row_bytes, b + e * row_bytes, n_steps);
}

// ---------------------------------------------------------------------------------------------
// Float rows against two or more tokens (tinyBLAS order).

struct F32Rows {
  using Elem = float;
  static constexpr int kStep = 16;
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
};
// BF16 pairs widened to floats, odd element first (split_bf16): VDPBF16PS's two fused steps per
// lane with its denormals flushed (MXCSR's DAZ and FTZ while the tile multiplies).
struct Bf16SplitRows {
  using Elem = float;
  static constexpr int kStep = 16;
  static constexpr bool kFlushDenormals = true;
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
};
struct F16Rows {
  using Elem = uint16_t;
  static constexpr int kStep = 16;
  static __m512 load(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};

// [reduce(a), reduce(b), reduce(c), reduce(d)] for reduce = _mm512_reduce_add_ps, with its very
// pairings (GCC: lane i + lane i+8, then i + i+4, then 0 + 2 and 1 + 3, then those two), so each
// sum has its bits; four sums share every shuffle and add: 14 operations, not 4 x 8. The float
// tiles' reductions took 14% of the F32 tile's samples in prefill, one at a time.
inline __m128 reduce_add4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // [a.lo + a.hi | b.lo + b.hi], [c.. | d..]: eight lanes each
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
  // quarter k: the first four of those eight lanes plus the last four, for a, b, c, d
  const __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 t = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));  // [s0 + s2, s1 + s3, ..]
  const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));  // lane 0: t0 + t1
  const __m512i lane0s = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(lane0s, u));
}

// The RM x RN sums of a float tile into y[t * ys + r]: four rows of a token at once where the tile
// has four.
template <int RM, int RN>
inline void store_tile_sums(__m512 (&acc)[RM][RN], float* y, int64_t ys) {
  if constexpr (RM == 4) {
    for (int t = 0; t < RN; ++t) _mm_storeu_ps(y + t * ys, reduce_add4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
  } else {
    for (int r = 0; r < RM; ++r)
      for (int t = 0; t < RN; ++t) y[t * ys + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

// A tile's sums carried between slices of the rows (a long row is taken in slices whose tokens'
// activations stay in the L1 cache): the accumulators themselves, so each sum sees the
// operations of one pass over the whole row, in the same order.
struct TileCarry {
  __m512* acc = nullptr;  // RM x RN accumulators; unused when the slice is the whole row
  bool first = true;      // start from zero, else from acc
  bool last = true;       // reduce into y, else keep in acc
};

// RM rows (w, w + ws, ...) against RN tokens (x, x + xs, ...) of float activations; y[t * ys + r].
template <typename Rows, int RM, int RN>
void tile_float(int64_t n, const typename Rows::Elem* w, int64_t ws, const float* x, int64_t xs,
                float* y, int64_t ys, TileCarry carry) {
  __m512 acc[RM][RN];
  for (int r = 0; r < RM; ++r)
    for (int t = 0; t < RN; ++t) acc[r][t] = carry.first ? _mm512_setzero_ps() : carry.acc[r * RN + t];
  constexpr bool kFlush = requires { Rows::kFlushDenormals; };
  unsigned csr = 0;
  if constexpr (kFlush) {
    csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);  // FTZ | DAZ
  }
  for (int64_t i = 0; i < n; i += 16) {
    __m512 wv[RM];
    for (int r = 0; r < RM; ++r) wv[r] = Rows::load(w + r * ws + i);
    for (int t = 0; t < RN; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * xs + i);
      for (int r = 0; r < RM; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  if constexpr (kFlush) _mm_setcsr(csr);  // the sums are reduced as VDPBF16PS's are, unflushed
  if (carry.last) {
    store_tile_sums(acc, y, ys);
    return;
  }
  for (int r = 0; r < RM; ++r)
    for (int t = 0; t < RN; ++t) carry.acc[r * RN + t] = acc[r][t];
}

// BF16 rows against BF16 activations: VDPBF16PS over steps of 32.
template <int RM, int RN>
void tile_bf16(int64_t n, const uint16_t* w, int64_t ws, const uint16_t* x, int64_t xs, float* y,
               int64_t ys, TileCarry carry) {
  __m512 acc[RM][RN];
  for (int r = 0; r < RM; ++r)
    for (int t = 0; t < RN; ++t) acc[r][t] = carry.first ? _mm512_setzero_ps() : carry.acc[r * RN + t];
  for (int64_t i = 0; i < n; i += 32) {
    __m512bh wv[RM];
    for (int r = 0; r < RM; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * ws + i);
    for (int t = 0; t < RN; ++t) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + t * xs + i);
      for (int r = 0; r < RM; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  if (carry.last) {
    store_tile_sums(acc, y, ys);
    return;
  }
  for (int r = 0; r < RM; ++r)
    for (int t = 0; t < RN; ++t) carry.acc[r * RN + t] = acc[r][t];
}

// 4 rows x 6 tokens: 24 accumulators, and each step loads 4 weight vectors (from L2) for 24 FMAs.
// Against 4 x 4 this measured +17% (F32) and +22% (BF16) on the 254M model's 1024 x 2816
// product with 512 tokens, one thread (bench/gemm_bench.cpp); 5 x 5 was close, 6 x 4 and the
// narrower shapes slower.
constexpr int kFloatRM = 4;
constexpr int kFloatRN = 6;

template <typename Elem, typename XElem>
using FloatTileFn = void (*)(int64_t, const Elem*, int64_t, const XElem*, int64_t, float*, int64_t, TileCarry);

template <typename Elem, typename XElem, template <int, int> class T>
struct FloatTiles {
  FloatTileFn<Elem, XElem> fn[kFloatRM][kFloatRN];
  FloatTiles() { fill(std::make_index_sequence<kFloatRM * kFloatRN>{}); }
  template <size_t... I>
  void fill(std::index_sequence<I...>) {
    ((fn[I / kFloatRN][I % kFloatRN] = T<I / kFloatRN + 1, I % kFloatRN + 1>::run), ...);
  }
};

template <int RM, int RN>
struct F32Tile {
  static void run(int64_t n, const float* w, int64_t ws, const float* x, int64_t xs, float* y, int64_t ys, TileCarry c) {
    tile_float<F32Rows, RM, RN>(n, w, ws, x, xs, y, ys, c);
  }
};
template <int RM, int RN>
struct Bf16SplitTile {
  static void run(int64_t n, const float* w, int64_t ws, const float* x, int64_t xs, float* y, int64_t ys, TileCarry c) {
    tile_float<Bf16SplitRows, RM, RN>(n, w, ws, x, xs, y, ys, c);
  }
};
template <int RM, int RN>
struct F16Tile {
  static void run(int64_t n, const uint16_t* w, int64_t ws, const float* x, int64_t xs, float* y, int64_t ys, TileCarry c) {
    tile_float<F16Rows, RM, RN>(n, w, ws, x, xs, y, ys, c);
  }
};
template <int RM, int RN>
struct BF16Tile {
  static void run(int64_t n, const uint16_t* w, int64_t ws, const uint16_t* x, int64_t xs, float* y, int64_t ys, TileCarry c) {
    tile_bf16<RM, RN>(n, w, ws, x, xs, y, ys, c);
  }
};

// A token tile's activations should stay in the L1 cache (48 KiB here) while the tile's row
// groups pass over them, beside the rows being read: rows whose tile of activations is longer
// than this are taken in slices. The 254M model's 1024 x 2816 product (6 tokens' activations:
// 66 KiB), one thread, 128 tokens, alternating runs: 61-63 GMAC/s whole, 64-66 in three slices;
// slices of 12 KiB (two for 1024-long rows too) were slower.
constexpr size_t kTileActivationBytes = 24 * 1024;

// Whether a BF16 product runs through the F32 tiles (split_bf16) instead of VDPBF16PS tiles:
// where the CPU's VDPBF16PS is slower than two FMAs (Intel's, so far: 163 against 330 Gops/s of
// FMA, 2 threads, Emerald Rapids; AMD's ran at 1.8 times the FMA rate) and enough token tiles
// pass over each row block to pay for widening it.
bool bf16_split_tiles(int64_t n_in, int64_t n_tokens) {
  return n_tokens > 2 * kFloatRN && n_in % 32 == 0 && bf16_by_fma();
}

// Rows [r0, r1) of y = W x for n_tokens tokens, x as XElem rows of n_in.
template <typename Elem, typename XElem, typename Tiles>
void gemm_float_rows(const Tiles& tiles, const Elem* w, int64_t n_in, int64_t n_out, const XElem* x,
                     int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  const int64_t rb_rows = row_block(n_in * sizeof(Elem), kFloatRM);
  const int64_t tile_bytes = n_in * static_cast<int64_t>(sizeof(XElem)) * std::min<int64_t>(kFloatRN, n_tokens);
  const int64_t n_slices = (tile_bytes + kTileActivationBytes - 1) / kTileActivationBytes;
  const int64_t step = n_in % 32 == 0 ? 32 : 16;  // every tile's step divides it
  const int64_t slice = n_slices <= 1 ? n_in : (n_in / n_slices + step - 1) / step * step;
  constexpr int64_t kTileFloats = kFloatRM * kFloatRN * 16;  // one tile's accumulators
  thread_local AlignedVector<float> carried;
  if (slice < n_in && carried.size() < static_cast<size_t>((rb_rows / kFloatRM + 1) * kTileFloats))
    carried.resize((rb_rows / kFloatRM + 1) * kTileFloats);
  for (int64_t rb = r0; rb < r1; rb += rb_rows) {
    const int64_t re = std::min(r1, rb + rb_rows);
    for (int64_t t = 0; t < n_tokens; t += kFloatRN) {
      const int nt = static_cast<int>(std::min<int64_t>(kFloatRN, n_tokens - t));
      for (int64_t k = 0; k < n_in; k += slice) {
        const int64_t kn = std::min(slice, n_in - k);
        for (int64_t r = rb; r < re; r += kFloatRM) {
          const int nr = static_cast<int>(std::min<int64_t>(kFloatRM, re - r));
          const TileCarry carry{slice < n_in ? reinterpret_cast<__m512*>(carried.data() + (r - rb) / kFloatRM * kTileFloats) : nullptr,
                                k == 0, k + kn == n_in};
          tiles.fn[nr - 1][nt - 1](kn, w + r * n_in + k, n_in, x + t * n_in + k, n_in, y + t * n_out + r, n_out, carry);
        }
      }
    }
  }
}

// Decode of float rows (one token): ggml's vec_dot arithmetic for each row exactly as
// dot_avx512.cpp's vec_float computes it (four accumulators of sixteen lanes over each 64
// elements, (a0 + a2) + (a1 + a3), reduced), but R rows at a time, so the activations are loaded
// once for R rows. F16 activations come as floats (prepared once, exact), not converted per row.
// Rows must be a multiple of 64 long (no tail).
template <typename Rows, int R>
void gemv_float(int64_t n, const typename Rows::Elem* w, int64_t row_stride, const float* x, float* out,
                PassPrefetch pf = {}) {
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (auto& a : acc[r]) a = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 64) {
    pf.step();
    for (int j = 0; j < 4; ++j) {
      const __m512 xv = _mm512_loadu_ps(x + i + 16 * j);
      for (int r = 0; r < R; ++r)
        acc[r][j] = _mm512_fmadd_ps(Rows::load(w + r * row_stride + i + 16 * j), xv, acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const __m512 a = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][2]), _mm512_add_ps(acc[r][1], acc[r][3]));
    out[r] = _mm512_reduce_add_ps(a);
  }
}

// Rows [r0, r1), four at a time. F32 rows are long (4 KiB and more), so four of them side by
// side are streams the hardware prefetchers follow, and prefetching the next pass as the
// quantized passes do measured slower: one thread, a 1 GiB matrix of 1024-wide rows from memory,
// 24.5 GB/s with 8 rows and the prefetch, 27.6 with 8 rows and none, 29.9 with 4 and none; on
// another machine (27 GB/s read with 2 threads) the 254M model's decode read 24-28 tokens/s with
// it, 27-29 without. F16 rows are half as long, and there the prefetch of the next pass (up to
// the matrix's end: the rows a thread most likely takes next) pays: 254M F16 decode, 2 threads,
// alternating runs, 33-37 tokens/s without, 47-50 with.
template <typename Rows>
void gemv_float_rows(const typename Rows::Elem* w, int64_t n_in, const float* x, float* y, int64_t r0, int64_t r1,
                     int64_t n_out) {
  constexpr int kRows = 4;
  constexpr bool kPrefetch = !std::is_same_v<Rows, F32Rows>;
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows)
    gemv_float<Rows, kRows>(n_in, w + r * n_in, n_in, x, y + r,
                            kPrefetch ? next_pass(w, n_in * sizeof(*w), r + kRows, kRows, n_out, n_in / 64) : PassPrefetch{});
  for (; r < r1; ++r) gemv_float<Rows, 1>(n_in, w + r * n_in, n_in, x, y + r);
}

// Decode of BF16 rows as dot_avx512.cpp's dot_bf16 (ggml_vec_dot_bf16): two VDPBF16PS
// accumulators taking alternate groups of 32 of each 64 elements, each reduced and added in
// double; R rows at a time, prefetching the next pass as the F16 rows do. Rows must be a
// multiple of 64 long.
template <int R>
void gemv_bf16(int64_t n, const uint16_t* w, int64_t row_stride, const uint16_t* x, float* out, PassPrefetch pf = {}) {
  __m512 c1[R], c2[R];
  for (int r = 0; r < R; ++r) c1[r] = c2[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 64) {
    pf.step();
    const __m512bh x0 = (__m512bh)_mm512_loadu_si512(x + i), x1 = (__m512bh)_mm512_loadu_si512(x + i + 32);
    for (int r = 0; r < R; ++r) {
      c1[r] = _mm512_dpbf16_ps(c1[r], (__m512bh)_mm512_loadu_si512(w + r * row_stride + i), x0);
      c2[r] = _mm512_dpbf16_ps(c2[r], (__m512bh)_mm512_loadu_si512(w + r * row_stride + i + 32), x1);
    }
  }
  for (int r = 0; r < R; ++r) {
    double sum = 0;
    sum += static_cast<double>(_mm512_reduce_add_ps(c1[r]));
    sum += static_cast<double>(_mm512_reduce_add_ps(c2[r]));
    out[r] = static_cast<float>(sum);
  }
}

void gemv_bf16_rows(const uint16_t* w, int64_t n_in, const uint16_t* x, float* y, int64_t r0, int64_t r1, int64_t n_out) {
  constexpr int kRows = 4;
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows)
    gemv_bf16<kRows>(n_in, w + r * n_in, n_in, x, y + r, next_pass(w, n_in * sizeof(*w), r + kRows, kRows, n_out, n_in / 64));
  for (; r < r1; ++r) gemv_bf16<1>(n_in, w + r * n_in, n_in, x, y + r);
}

// BF16 values as floats, each 32 of them reordered so that a lane's pair comes as VDPBF16PS
// adds it: lanes 0-15 the odd elements (2j + 1), then lanes 16-31 the even ones (2j). n is a
// multiple of 32.
void split_bf16(const uint16_t* x, float* out, int64_t n) {
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int64_t i = 0; i < n; i += 32) {
    const __m512i pairs = _mm512_loadu_si512(x + i);  // lane j: element 2j low, 2j + 1 high
    _mm512_storeu_si512(out + i, _mm512_and_si512(pairs, high));
    _mm512_storeu_si512(out + i + 16, _mm512_slli_epi32(pairs, 16));
  }
}

// A per-thread buffer of at least n floats (one for every widened product).
float* widened_block(size_t n) {
  thread_local AlignedVector<float> block;
  if (block.size() < n) block.resize(n);
  return block.data();
}

// Rows [r0, r1) of 16-bit float rows through float tiles: each block of rows (the tiles' row
// block of the 16-bit rows) widened once by `widen`, then every token tile passes over it.
template <typename Tiles>
void gemm_widened_rows(const Tiles& tiles, void (*widen)(const uint16_t*, float*, int64_t), const uint16_t* w,
                       int64_t n_in, int64_t n_out, const float* x, int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  const int64_t rb_rows = row_block(n_in * sizeof(uint16_t), kFloatRM);
  float* block = widened_block(static_cast<size_t>(rb_rows * n_in));
  for (int64_t rb = r0; rb < r1; rb += rb_rows) {
    const int64_t re = std::min(r1, rb + rb_rows);
    widen(w + rb * n_in, block, (re - rb) * n_in);
    gemm_float_rows(tiles, block, n_in, n_out, x, n_tokens, y + rb, 0, re - rb);
  }
}

bool float_gemm(TensorType type, const void* w, int64_t n_in, int64_t n_out, const void* act,
                const void* prepared, int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  if (n_tokens == 1 && type == TensorType::F32) {
    gemv_float_rows<F32Rows>(static_cast<const float*>(w), n_in, static_cast<const float*>(act), y, r0, r1, n_out);
    return true;
  }
  if (n_tokens == 1 && type == TensorType::BF16) {
    gemv_bf16_rows(static_cast<const uint16_t*>(w), n_in, static_cast<const uint16_t*>(act), y, r0, r1, n_out);
    return true;
  }
  if (n_tokens == 1 && type == TensorType::F16) {
    gemv_float_rows<F16Rows>(static_cast<const uint16_t*>(w), n_in, static_cast<const float*>(prepared), y, r0, r1, n_out);
    return true;
  }
  switch (type) {
    case TensorType::F32: {
      static const FloatTiles<float, float, F32Tile> tiles;
      gemm_float_rows(tiles, static_cast<const float*>(w), n_in, n_out, static_cast<const float*>(act),
                      n_tokens, y, r0, r1);
      return true;
    }
    case TensorType::F16: {
      // The activations as floats (exact, prepared once), not converted once per weight row.
      const auto* x = static_cast<const float*>(prepared);
      const auto* w16 = static_cast<const uint16_t*>(w);
      if (n_tokens <= 2 * kFloatRN) {
        static const FloatTiles<uint16_t, float, F16Tile> tiles;
        gemm_float_rows(tiles, w16, n_in, n_out, x, n_tokens, y, r0, r1);
        return true;
      }
      // Many token tiles pass over each block of rows: the block is converted to floats once
      // (exact), and the F32 tiles run on it, free of a conversion (two micro-ops on the FMA
      // ports) per weight vector and tile. One thread, 2816 x 1024, 128 tokens: 56.5 -> 69.1
      // GMAC/s; 254M F16 pp128, 2 threads, alternating runs: 410-484 -> 490-572 tokens/s.
      static const FloatTiles<float, float, F32Tile> tiles;
      gemm_widened_rows(tiles, fp16_to_fp32_row, w16, n_in, n_out, x, n_tokens, y, r0, r1);
      return true;
    }
    case TensorType::BF16: {
      const auto* w16 = static_cast<const uint16_t*>(w);
      if (prepared == nullptr) {
        static const FloatTiles<uint16_t, uint16_t, BF16Tile> tiles;
        gemm_float_rows(tiles, w16, n_in, n_out, static_cast<const uint16_t*>(act), n_tokens, y, r0, r1);
        return true;
      }
      // VDPBF16PS by FMAs (bf16_by_fma): each block of rows split and widened once, then the
      // F32 tiles with denormals flushed, against the activations split the same way.
      static const FloatTiles<float, float, Bf16SplitTile> tiles;
      gemm_widened_rows(tiles, split_bf16, w16, n_in, n_out, static_cast<const float*>(prepared), n_tokens, y, r0, r1);
      return true;
    }
    default: return false;
  }
}

// ---------------------------------------------------------------------------------------------
// 32-element formats with Q8_0 activations.

// Two tokens' activations for one block: token a's 32 values, then token b's; the offset terms
// -offset * (sum of each group of four values), a's eight lanes then b's; the scales, a's eight
// times then b's. In decode both halves hold the one token.
struct alignas(64) PairBlock {
  int8_t qs[64];
  int32_t bias[16];
  float d[16];
};
static_assert(sizeof(PairBlock) == 192);

// Pairs of tokens (token 2p and 2p+1; the one past the end, if any, zero), or for one token one
// pair holding it twice. Layout [pair][block].
size_t pairs_size(int64_t n_in, int64_t n_tokens) {
  return static_cast<size_t>((n_tokens + 1) / 2 * (n_in / kQK8_0)) * sizeof(PairBlock);
}

void prepare_pairs(const void* act, int64_t n_in, int64_t n_tokens, int offset, PairBlock* pairs) {
  const int64_t nb = n_in / kQK8_0;
  const size_t act_row = row_size(TensorType::Q8_0, n_in);
  const bool duplicate = n_tokens == 1;
  const int64_t n_pairs = (n_tokens + 1) / 2;
  const __m256i ones = _mm256_set1_epi8(1);
  const __m256i neg_offset = _mm256_set1_epi32(-offset);
  for (int64_t p = 0; p < n_pairs; ++p) {
    for (int half = 0; half < 2; ++half) {
      const int64_t t = duplicate ? 0 : 2 * p + half;
      const auto* blocks = reinterpret_cast<const block_q8_0*>(static_cast<const uint8_t*>(act) + t * act_row);
      for (int64_t i = 0; i < nb; ++i) {
        PairBlock& o = pairs[p * nb + i];
        if (t >= n_tokens) {
          std::memset(o.qs + 32 * half, 0, 32);
          std::memset(o.bias + 8 * half, 0, 32);
          std::memset(o.d + 8 * half, 0, 32);
          continue;
        }
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks[i].qs));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.qs + 32 * half), q);
        const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.bias + 8 * half), _mm256_mullo_epi32(sums, neg_offset));
        _mm256_storeu_ps(o.d + 8 * half, _mm256_set1_ps(_cvtsh_ss(blocks[i].d)));
      }
    }
  }
}

// Weights of the 32-element formats as unsigned bytes u with value = u - kOffset.
struct Q4_0Rows {
  using Block = block_q4_0;
  static constexpr int kOffset = 8;
  // Row a's 32 values in the low half, row b's in the high half.
  static __m512i pair(const Block* a, const Block* b) {
    const __m512i v = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs)))),
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs))), 1);
    return nibbles(v);
  }
  // One row's 32 values in both halves.
  static __m512i dup(const Block* a) {
    return nibbles(_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a->qs))));
  }
  // [p, p, p, p] (16 packed bytes per 128 bits) -> [low nibbles, high nibbles, low, high].
  static __m512i nibbles(__m512i v) {
    const __m512i shifts = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                             0x0004000400040004, 0x0004000400040004);
    return _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(0x0F));
  }
};

struct Q8_0Rows {
  using Block = block_q8_0;
  static constexpr int kOffset = 128;
  static __m512i pair(const Block* a, const Block* b) {
    const __m512i v = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static __m512i dup(const Block* a) {
    const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs)));
    return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
};

template <typename Block>
inline __m512 scale_pair(const Block* a, const Block* b) {
  const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(a->d))),
                                            _mm_set1_epi16(static_cast<short>(b->d)), 1);
  return _mm512_cvtph_ps(h);
}
template <typename Block>
inline __m512 scale_dup(const Block* a) {
  return _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(a->d)));
}

// acc += (dw * dy) * float(VPDPBUSD(bias, u, y)): one block of two outputs.
inline __m512 block_step(__m512 acc, __m512i u, __m512 dw, const PairBlock& y) {
  const __m512i p = _mm512_dpbusd_epi32(_mm512_load_si512(y.bias), u, _mm512_load_si512(y.qs));
  return _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_load_ps(y.d)), _mm512_cvtepi32_ps(p), acc);
}

inline float finish_low(__m512 acc) { return hsum(_mm512_castps512_ps256(acc)) + 0.0f; }
inline float finish_high(__m512 acc) { return hsum(_mm512_extractf32x8_ps(acc, 1)) + 0.0f; }

// Decode: RQ pairs of rows (rows[2q], rows[2q + 1]) against one token (y: one pair, duplicated).
template <typename Rows, int RQ>
void gemv_q32(int64_t nb, const typename Rows::Block* const* rows, const PairBlock* y, float* out,
              PassPrefetch pf = {}) {
  __m512 acc[RQ];
  for (int q = 0; q < RQ; ++q) acc[q] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    pf.step();
    for (int q = 0; q < RQ; ++q) {
      const auto* a = rows[2 * q] + i;
      const auto* b = rows[2 * q + 1] + i;
      acc[q] = block_step(acc[q], Rows::pair(a, b), scale_pair(a, b), y[i]);
    }
  }
  for (int q = 0; q < RQ; ++q) {
    out[2 * q] = finish_low(acc[q]);
    out[2 * q + 1] = finish_high(acc[q]);
  }
}

// Prefill: RM rows against RP pairs of tokens (y + p * nb); y_out[t * ys + r].
template <typename Rows, int RM, int RP>
void tile_q32(int64_t nb, const typename Rows::Block* w, int64_t ws, const PairBlock* y, int n_tokens,
              float* out, int64_t ys, PassPrefetch pf) {
  __m512 acc[RM][RP];
  for (int r = 0; r < RM; ++r)
    for (int p = 0; p < RP; ++p) acc[r][p] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    pf.step();
    __m512i u[RM];
    __m512 dw[RM];
    for (int r = 0; r < RM; ++r) {
      const auto* blk = w + r * ws + i;
      u[r] = Rows::dup(blk);
      dw[r] = scale_dup(blk);
    }
    for (int p = 0; p < RP; ++p)
      for (int r = 0; r < RM; ++r) acc[r][p] = block_step(acc[r][p], u[r], dw[r], y[p * nb + i]);
  }
  for (int p = 0; p < RP; ++p)
    for (int r = 0; r < RM; ++r) {
      out[(2 * p) * ys + r] = finish_low(acc[r][p]);
      if (2 * p + 1 < n_tokens) out[(2 * p + 1) * ys + r] = finish_high(acc[r][p]);
    }
}

constexpr int kQuantRQ = 8;  // decode: row pairs per pass
constexpr int kQuantRM = 4;  // prefill tile: rows
constexpr int kQuantRP = 4;  // prefill tile: token pairs (4 x 4 accumulators + 8 row registers of 32)

template <typename Rows>
void gemv_q32_rows(const void* w, int64_t n_in, const PairBlock* y, float* out, int64_t r0, int64_t r1,
                   int64_t pf_end) {
  using Block = typename Rows::Block;
  const int64_t nb = n_in / kQK8_0;
  const auto* base = static_cast<const Block*>(w);
  int64_t r = r0;
  for (; r + 2 * kQuantRQ <= r1; r += 2 * kQuantRQ) {
    const Block* rows[2 * kQuantRQ];
    for (int k = 0; k < 2 * kQuantRQ; ++k) rows[k] = base + (r + k) * nb;
    gemv_q32<Rows, kQuantRQ>(nb, rows, y, out + r, next_pass(w, nb * sizeof(Block), r + 2 * kQuantRQ, 2 * kQuantRQ, pf_end, nb));
  }
  // The rest one pair at a time; an odd last row is paired with itself.
  for (; r < r1; r += 2) {
    const Block* rows[2] = {base + r * nb, base + std::min(r + 1, r1 - 1) * nb};
    float o[2];
    gemv_q32<Rows, 1>(nb, rows, y, o);
    out[r] = o[0];
    if (r + 1 < r1) out[r + 1] = o[1];
  }
}

template <typename Rows>
using QuantTileFn = void (*)(int64_t, const typename Rows::Block*, int64_t, const PairBlock*, int, float*, int64_t,
                             PassPrefetch);

template <typename Rows>
struct QuantTiles {
  QuantTileFn<Rows> fn[kQuantRM][kQuantRP] = {
      {tile_q32<Rows, 1, 1>, tile_q32<Rows, 1, 2>, tile_q32<Rows, 1, 3>, tile_q32<Rows, 1, 4>},
      {tile_q32<Rows, 2, 1>, tile_q32<Rows, 2, 2>, tile_q32<Rows, 2, 3>, tile_q32<Rows, 2, 4>},
      {tile_q32<Rows, 3, 1>, tile_q32<Rows, 3, 2>, tile_q32<Rows, 3, 3>, tile_q32<Rows, 3, 4>},
      {tile_q32<Rows, 4, 1>, tile_q32<Rows, 4, 2>, tile_q32<Rows, 4, 3>, tile_q32<Rows, 4, 4>},
  };
};

template <typename Rows>
void gemm_q32_rows(const void* w, int64_t n_in, int64_t n_out, const PairBlock* pairs, int64_t n_tokens,
                   float* y, int64_t r0, int64_t r1) {
  using Block = typename Rows::Block;
  static const QuantTiles<Rows> tiles;
  const int64_t nb = n_in / kQK8_0;
  const auto* base = static_cast<const Block*>(w);
  const int64_t n_pairs = (n_tokens + 1) / 2;
  const int64_t rb_rows = row_block(nb * sizeof(Block), kQuantRM);
  for (int64_t rb = r0; rb < r1; rb += rb_rows) {
    const int64_t re = std::min(r1, rb + rb_rows);
    for (int64_t p = 0; p < n_pairs; p += kQuantRP) {
      const int np = static_cast<int>(std::min<int64_t>(kQuantRP, n_pairs - p));
      const int nt = static_cast<int>(std::min<int64_t>(2 * kQuantRP, n_tokens - 2 * p));
      for (int64_t r = rb; r < re; r += kQuantRM) {
        const int nr = static_cast<int>(std::min<int64_t>(kQuantRM, re - r));
        // The first token tile reads the block's rows from memory: it prefetches the next rows
        // as decode does (a few tokens, as when sessions are batched, read each row once).
        const PassPrefetch pf = p == 0 ? next_pass(w, nb * sizeof(Block), r + kQuantRM, kQuantRM, n_out, nb) : PassPrefetch{};
        tiles.fn[nr - 1][np - 1](nb, base + r * nb, nb, pairs + p * nb, nt, y + 2 * p * n_out + r, n_out, pf);
      }
    }
  }
}

bool quant32_gemm(TensorType type, const void* w, int64_t n_in, int64_t n_out, const void* prepared,
                  int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  const bool q4 = type == TensorType::Q4_0;
  if (!q4 && type != TensorType::Q8_0) return false;
  const auto* pairs = static_cast<const PairBlock*>(prepared);
  if (n_tokens == 1) {
    if (q4) gemv_q32_rows<Q4_0Rows>(w, n_in, pairs, y, r0, r1, n_out);
    else gemv_q32_rows<Q8_0Rows>(w, n_in, pairs, y, r0, r1, n_out);
  } else {
    if (q4) gemm_q32_rows<Q4_0Rows>(w, n_in, n_out, pairs, n_tokens, y, r0, r1);
    else gemm_q32_rows<Q8_0Rows>(w, n_in, n_out, pairs, n_tokens, y, r0, r1);
  }
  return true;
}


// ---------------------------------------------------------------------------------------------
// Q4_0 and Q8_0 by block (kernels.h: by_block).
//
// Each output is one int32 lane: sixteen rows side by side in a register, so a VPDPBUSD of the
// rows' unsigned weights (four consecutive elements of each row, value + offset) with four
// activation bytes broadcast to every lane adds four products to each row's sum; eight of them
// give each row's exact block sum (the offset taken out by the token's bias), and the float step
// acc = fma(float(sum), dw * da, acc) comes once per block for sixteen outputs, not once per
// eight lanes of one. Matrices packed at load (pack_by_block below) hold those registers as they
// are; rows read from the file are transposed on the way in, each sixteen bytes of sixteen rows
// (four 4 x 4 transposes of 32-bit words, which leave row 4j + l at lane 4l + j), and their
// scales gathered in that same order.

// One token's block of activations: the 32 values, the scale as a float, and -offset * (sum of
// the values), which turns the sum over the unsigned weights into the sum over the weights.
struct TokBlock {
  int8_t qs[32];
  float d;
  int32_t bias;
};
static_assert(sizeof(TokBlock) == 40);

size_t tok_blocks_size(int64_t n_in, int64_t n_tokens) {
  return static_cast<size_t>(n_tokens * (n_in / kQK8_0)) * sizeof(TokBlock);
}

// Layout [token][block].
void prepare_tok_blocks(const void* act, int64_t n_in, int64_t n_tokens, int offset, TokBlock* out) {
  const int64_t nb = n_in / kQK8_0;
  const size_t act_row = row_size(TensorType::Q8_0, n_in);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* blocks = reinterpret_cast<const block_q8_0*>(static_cast<const uint8_t*>(act) + t * act_row);
    for (int64_t i = 0; i < nb; ++i) {
      TokBlock& o = out[t * nb + i];
      std::memcpy(o.qs, blocks[i].qs, 32);
      int32_t sum = 0;
      for (int j = 0; j < 32; ++j) sum += blocks[i].qs[j];
      o.d = _cvtsh_ss(blocks[i].d);
      o.bias = -offset * sum;
    }
  }
}

// The two formats. Per block, kWords registers of sixteen rows' 4-byte groups ("words": word c,
// lane k holds bytes 4c..4c+3 of row k's quants) become the eight registers w[c] of elements
// 4c..4c+3: unsigned (value + kOffset) for VPDPBUSD, or signed for AMX's TDPBSSD.
struct Q4_0ByBlock {
  using Block = block_q4_0;
  static constexpr int kOffset = 8;
  static constexpr int kWords = 4;  // the 16 bytes of nibbles: elements c and 16 + c share byte c
  static void unsigned_values(const __m512i* words, __m512i* w) {
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
      w[c] = _mm512_and_si512(words[c], low4);
      w[4 + c] = _mm512_and_si512(_mm512_srli_epi16(words[c], 4), low4);
    }
  }
  static void signed_values(const __m512i* words, __m512i* w) {
    unsigned_values(words, w);
    for (int c = 0; c < 8; ++c) w[c] = _mm512_sub_epi8(w[c], _mm512_set1_epi8(kOffset));
  }
};
struct Q8_0ByBlock {
  using Block = block_q8_0;
  static constexpr int kOffset = 128;
  static constexpr int kWords = 8;
  static void unsigned_values(const __m512i* words, __m512i* w) {
    for (int c = 0; c < 8; ++c) w[c] = _mm512_xor_si512(words[c], _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static void signed_values(const __m512i* words, __m512i* w) {
    for (int c = 0; c < 8; ++c) w[c] = words[c];
  }
};

// A matrix packed for these tiles (pack_weights), for row counts that are multiples of 16: the
// rows in groups of sixteen, each group nb * 16 * sizeof(Block) bytes (as many as its rows take
// in the file; so a group is 64-byte aligned only where nb is even, and the loads are unaligned
// ones, which cost nothing more on aligned data): for each block, the kWords words (64 bytes
// each, lane k = row k), then, for each block, the sixteen rows' scales (fp16, row k at k).
template <typename F>
struct Packed {
  static constexpr int64_t kWordBytes = 64 * F::kWords;  // per block
  static constexpr int64_t kScaleBytes = 32;             // per block
  static_assert(16 * sizeof(typename F::Block) == kWordBytes + kScaleBytes);
  static const uint8_t* words(const uint8_t* group, int64_t b) { return group + b * kWordBytes; }
  static __m512 scales(const uint8_t* group, int64_t nb, int64_t b) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + nb * kWordBytes + b * kScaleBytes)));
  }
};

template <typename F>
void pack_by_block(const void* w, int64_t n_in, int64_t n_out, uint8_t* out) {
  using P = Packed<F>;
  const int64_t nb = n_in / kQK8_0;
  const auto* rows = static_cast<const typename F::Block*>(w);
  for (int64_t g = 0; g < n_out / 16; ++g) {
    uint8_t* words = out + g * 16 * nb * sizeof(typename F::Block);
    uint8_t* scales = words + nb * P::kWordBytes;
    for (int64_t b = 0; b < nb; ++b)
      for (int k = 0; k < 16; ++k) {
        const auto& x = rows[(g * 16 + k) * nb + b];
        for (int c = 0; c < F::kWords; ++c) std::memcpy(words + b * P::kWordBytes + 64 * c + 4 * k, x.qs + 4 * c, 4);
        std::memcpy(scales + b * P::kScaleBytes + 2 * k, &x.d, 2);
      }
  }
}

// Lane 4l + j of a transposed register holds row 4j + l (and the other way round).
inline __m512i lane_rows() { return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15); }

// Block b's words from sixteen rows as they lie in the file (rows[k]: row k's first block),
// transposed: lane 4l + j holds row 4j + l.
template <typename F>
inline void transposed_words(const uint8_t* const* rows, int64_t b, __m512i* words) {
  for (int h = 0; h < F::kWords / 4; ++h) {
    const int64_t at = b * static_cast<int64_t>(sizeof(typename F::Block)) + 2 + 16 * h;  // sixteen bytes of quants
    __m512i a[4];
    for (int j = 0; j < 4; ++j) {
      const uint8_t* const* r = rows + 4 * j;
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r[0] + at)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[1] + at)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[2] + at)), 2);
      a[j] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[3] + at)), 3);
    }
    const __m512i u0 = _mm512_unpacklo_epi32(a[0], a[1]);
    const __m512i u1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i u2 = _mm512_unpacklo_epi32(a[2], a[3]);
    const __m512i u3 = _mm512_unpackhi_epi32(a[2], a[3]);
    words[4 * h + 0] = _mm512_unpacklo_epi64(u0, u2);
    words[4 * h + 1] = _mm512_unpackhi_epi64(u0, u2);
    words[4 * h + 2] = _mm512_unpacklo_epi64(u1, u3);
    words[4 * h + 3] = _mm512_unpackhi_epi64(u1, u3);
  }
}

// Sixteen rows against RT tokens (act + t * act_stride: token t's blocks); y[t * ys + k] for
// k < n_rows. The rows come either as they lie in the file (rows[k]: row k's first block; the
// rows past n_rows repeat the last one), transposed block by block on the way in, or packed
// (`packed` is the group's first byte), which is the same registers read straight from memory,
// one stream.
template <typename F, int RT, bool kPacked>
void rows16(int64_t nb, const uint8_t* const* rows, const uint8_t* packed, int n_rows, const TokBlock* act,
            int64_t act_stride, float* y, int64_t ys, PassPrefetch pf) {
  using P = Packed<F>;
  constexpr int64_t kBlock = sizeof(typename F::Block);
  // Byte offsets of the rows in lane order, for gathering each block's sixteen scales.
  __m512i gather_at = _mm512_setzero_si512();
  if (!kPacked) {
    alignas(64) int32_t offset[16];
    for (int p = 0; p < 16; ++p) offset[p] = static_cast<int32_t>(rows[4 * (p % 4) + p / 4] - rows[0]);
    gather_at = _mm512_load_si512(offset);
  }
  __m512 acc[RT];
  for (int t = 0; t < RT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    pf.step();
    __m512i words[F::kWords];
    __m512 dw;
    if constexpr (kPacked) {
      for (int c = 0; c < F::kWords; ++c) words[c] = _mm512_loadu_si512(P::words(packed, b) + 64 * c);
      dw = P::scales(packed, nb, b);
    } else {
      transposed_words<F>(rows, b, words);
      const __m512i d16 = _mm512_i32gather_epi32(gather_at, rows[0] + b * kBlock, 1);
      dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d16));
    }
    __m512i w[8];
    F::unsigned_values(words, w);
    for (int t = 0; t < RT; ++t) {
      const TokBlock& x = act[t * act_stride + b];
      // Two chains of sums (exact integers, so the grouping does not matter), not one of eight
      // dependent VPDPBUSDs.
      __m512i sum[2] = {_mm512_set1_epi32(x.bias), _mm512_setzero_si512()};
      for (int c = 0; c < 8; ++c) sum[c % 2] = dpbusd_bcast(sum[c % 2], w[c], x.qs + 4 * c);
      const __m512i total = _mm512_add_epi32(sum[0], sum[1]);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(dw, _mm512_set1_ps(x.d)), acc[t]);
    }
  }
  const __mmask16 keep = static_cast<__mmask16>((1u << n_rows) - 1);
  for (int t = 0; t < RT; ++t)
    _mm512_mask_storeu_ps(y + t * ys, keep, kPacked ? acc[t] : _mm512_permutexvar_ps(lane_rows(), acc[t]));
}

// ---------------------------------------------------------------------------------------------
// By block on AMX (prefill, 16 tokens at a time): per block, TDPBSSD gives the exact int32 sums
// of 16 tokens (A: 16 x 32 activations) against 16 rows (B: their signed weights in the 4-byte
// groups of rows16's words), the same integers as rows16's VPDPBUSD sums plus bias; then its very
// float operations, acc = fma(float(sum), dw * d, acc) per block, so the results keep their bits.

// Loads a tile configuration (palette 1): tile i gets tiles[i] = {rows, bytes per row}. Written
// out, not _tile_loadconfig: GCC 12 does not always see that builtin read the structure and may
// drop the stores that fill it (it did in a variant of amx_group).
inline void amx_configure(std::initializer_list<std::pair<uint8_t, uint16_t>> tiles) {
  struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  } cfg;
  int i = 0;
  for (auto [rows, bytes] : tiles) cfg.rows[i] = rows, cfg.colsb[i++] = bytes;
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

// One block of a group of sixteen rows, ready for the tiles: B (8 rows of 64 bytes: row j, lane
// k holds row k's weights 4j..4j+3 as signed bytes) and the rows' scales as floats.
struct alignas(64) AmxBlock {
  uint8_t b[8][64];
  float dw[16];
};
static_assert(sizeof(AmxBlock) == 576);

// Where the tiles read a group's blocks: AmxBlocks unpacked for them, or a packed Q8_0 group,
// whose words already are B.
struct AmxUnpacked {
  const AmxBlock* blocks;
  const void* b(int64_t i) const { return blocks[i].b; }
  __m512 dw(int64_t i) const { return _mm512_load_ps(blocks[i].dw); }
};
struct AmxPackedQ8_0 {
  const uint8_t* group;
  int64_t nb;
  const void* b(int64_t i) const { return Packed<Q8_0ByBlock>::words(group, i); }
  __m512 dw(int64_t i) const { return Packed<Q8_0ByBlock>::scales(group, nb, i); }
};

// The group's blocks as AmxBlocks: from the packed layout, or from rows as they lie in the file
// (rows[k], the rows past n_rows repeating the last one).
template <typename F>
void amx_unpack_group(int64_t nb, const uint8_t* const* rows, const uint8_t* packed, AmxBlock* out,
                      PassPrefetch pf) {
  using P = Packed<F>;
  constexpr int64_t kBlock = sizeof(typename F::Block);
  __m512i gather_at = _mm512_setzero_si512();
  if (packed == nullptr) {
    alignas(64) int32_t offset[16];
    for (int p = 0; p < 16; ++p) offset[p] = static_cast<int32_t>(rows[p] - rows[0]);
    gather_at = _mm512_load_si512(offset);
  }
  for (int64_t b = 0; b < nb; ++b) {
    pf.step();
    __m512i words[F::kWords];
    if (packed != nullptr) {
      for (int c = 0; c < F::kWords; ++c) words[c] = _mm512_loadu_si512(P::words(packed, b) + 64 * c);
      _mm512_store_ps(out[b].dw, P::scales(packed, nb, b));
    } else {
      // words[c], lane k: bytes 4c..4c+3 of row k's quants.
      alignas(64) uint32_t lanes[F::kWords][16];
      for (int k = 0; k < 16; ++k)
        for (int c = 0; c < F::kWords; ++c) std::memcpy(&lanes[c][k], rows[k] + b * kBlock + 2 + 4 * c, 4);
      for (int c = 0; c < F::kWords; ++c) words[c] = _mm512_load_si512(lanes[c]);
      const __m512i d16 = _mm512_i32gather_epi32(gather_at, rows[0] + b * kBlock, 1);
      _mm512_store_ps(out[b].dw, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d16)));
    }
    __m512i w[8];
    F::signed_values(words, w);
    for (int c = 0; c < 8; ++c) _mm512_store_si512(out[b].b[c], w[c]);
  }
}

// A group of sixteen rows (its blocks, from `src`) against n_tiles x 16 tokens (act + t *
// act_stride: token t's blocks); y[t * ys + k] for k < n_rows.
template <typename Source>
__attribute__((target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,amx-tile,amx-int8")))
void amx_group(int64_t nb, Source src, int n_rows, const TokBlock* act, int64_t act_stride, int64_t n_tiles,
               float* y, int64_t ys) {
  // C: 16 tokens x 16 rows of int32; A: 16 tokens x 32 activations; B: 32 weights (4 per row) x 16 rows.
  amx_configure({{16, 64}, {16, 32}, {8, 64}});
  const int64_t a_stride = act_stride * static_cast<int64_t>(sizeof(TokBlock));
  const __mmask16 keep = static_cast<__mmask16>((1u << n_rows) - 1);
  alignas(64) int32_t c[16][16];
  for (int64_t i = 0; i < n_tiles; ++i) {
    const TokBlock* a = act + i * 16 * act_stride;
    __m512 acc[16];
    for (auto& v : acc) v = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      _tile_zero(0);
      _tile_loadd(1, a[b].qs, a_stride);
      _tile_loadd(2, src.b(b), 64);
      _tile_dpbssd(0, 1, 2);
      _tile_stored(0, c, 64);
      const __m512 dw = src.dw(b);
      for (int t = 0; t < 16; ++t)
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[t])),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(a[t * act_stride + b].d)), acc[t]);
    }
    for (int t = 0; t < 16; ++t) _mm512_mask_storeu_ps(y + (i * 16 + t) * ys, keep, acc[t]);
  }
  _tile_release();
}

constexpr int kByBlockTokens = 8;  // tokens per tile

using ByBlockFn = void (*)(int64_t, const uint8_t* const*, const uint8_t*, int, const TokBlock*, int64_t, float*,
                           int64_t, PassPrefetch);
template <typename F, bool kPacked, size_t... I>
constexpr std::array<ByBlockFn, sizeof...(I)> by_block_tiles(std::index_sequence<I...>) {
  return {rows16<F, static_cast<int>(I) + 1, kPacked>...};
}

// packed: the matrix in Packed<F>'s layout, or null; then r0 and r1 must be multiples of 16.
template <typename F>
void by_block_rows(const void* w, const void* packed, int64_t n_in, int64_t n_out, const TokBlock* act,
                   int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  static constexpr auto by_rows = by_block_tiles<F, false>(std::make_index_sequence<kByBlockTokens>());
  static constexpr auto by_packed = by_block_tiles<F, true>(std::make_index_sequence<kByBlockTokens>());
  const auto& tiles = packed != nullptr ? by_packed : by_rows;
  const int64_t nb = n_in / kQK8_0;
  const size_t row_bytes = nb * sizeof(typename F::Block);  // also a packed group's bytes per row
  const auto* base = static_cast<const uint8_t*>(packed != nullptr ? packed : w);
  // More tokens than one tile: rows in blocks that stay in the L2 cache while the token tiles
  // pass over them; the first tile reads them from memory and prefetches the next rows.
  const int64_t rb_rows = n_tokens > kByBlockTokens ? row_block(row_bytes, 16) : r1 - r0;
  // AMX takes whole tiles of 16 tokens, a group of rows at a time; the tiles above the rest. (A
  // last tile of 8-15 tokens on AMX, the eight sessions of a server step among them, measured
  // slower for Q4_0: 8 x 64 tokens at depth 256, 366-488 -> 291-353 tokens/s; unpacking a
  // group's blocks costs more than their VPDPBUSDs for so few tokens.)
  const int64_t amx_tokens = n_tokens >= 16 && cpu_has_amx_int8() ? n_tokens / 16 * 16 : 0;
  if (amx_tokens > 0) {
    constexpr bool kQ8 = std::is_same_v<F, Q8_0ByBlock>;
    thread_local AlignedVector<AmxBlock> blocks;
    if (!(kQ8 && packed != nullptr) && blocks.size() < static_cast<size_t>(nb)) blocks.resize(nb);
    for (int64_t r = r0; r < r1; r += 16) {
      const int nr = static_cast<int>(std::min<int64_t>(16, r1 - r));
      if (kQ8 && packed != nullptr) {
        // Already the tiles' B: read straight from the packed group, one stream.
        amx_group(nb, AmxPackedQ8_0{base + r * row_bytes, nb}, nr, act, nb, amx_tokens / 16, y + r, n_out);
        continue;
      }
      const uint8_t* rows[16];
      if (packed == nullptr)
        for (int k = 0; k < 16; ++k) rows[k] = base + (r + std::min(k, nr - 1)) * row_bytes;
      amx_unpack_group<F>(nb, rows, packed != nullptr ? base + r * row_bytes : nullptr, blocks.data(),
                          next_pass(base, row_bytes, r + 16, 16, n_out, nb));
      amx_group(nb, AmxUnpacked{blocks.data()}, nr, act, nb, amx_tokens / 16, y + r, n_out);
    }
    if (amx_tokens == n_tokens) return;
    act += amx_tokens * nb;
    y += amx_tokens * n_out;
    n_tokens -= amx_tokens;
  }
  for (int64_t rb = r0; rb < r1; rb += rb_rows) {
    const int64_t re = std::min(r1, rb + rb_rows);
    for (int64_t t = 0; t < n_tokens; t += kByBlockTokens) {
      const int nt = static_cast<int>(std::min<int64_t>(kByBlockTokens, n_tokens - t));
      for (int64_t r = rb; r < re; r += 16) {
        const int nr = static_cast<int>(std::min<int64_t>(16, re - r));
        const uint8_t* rows[16];
        if (packed == nullptr)
          for (int k = 0; k < 16; ++k) rows[k] = base + (r + std::min(k, nr - 1)) * row_bytes;
        const PassPrefetch pf = t == 0 ? next_pass(base, row_bytes, r + 16, 16, n_out, nb) : PassPrefetch{};
        tiles[nt - 1](nb, rows, base + r * row_bytes, nr, act + t * nb, nb, y + t * n_out + r, n_out, pf);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// K-quants (Q4_K, Q6_K) with Q8_K activations.
//
// The dot products (simd_dots.inc, as ggml's AVX2 kernels) form per super-block eight int32
// lanes (lane k: elements 4k..4k+3 of every 32-element chunk, each chunk times its scale), then
// acc = fma(dy * dw, float(lanes), acc); Q4_K also keeps four float lanes of mins,
// acc_m = fma(-dy * dmin, float(min . sums of 32 activations), acc_m); at the end hsum(acc)
// (+ (m0 + m2) + (m1 + m3) for Q4_K). Here the lanes come from VPMADDUBSW (adjacent pairs of
// products; these ranges never saturate) and VPDPWSSD (times the scale, into the lanes), two
// chunks or two tokens per 512-bit register: the same integers.

// One token's super-block, for decode.
struct alignas(64) KTok {
  int8_t qs[256];
  int16_t y32[128];  // Q6_K's offset: VPMADDUBSW(32, qs), i.e. 32 * (qs[2m] + qs[2m + 1])
  int16_t bs32[8];   // Q4_K's mins: the sums of the eight sub-blocks of 32 (bsums32)
  float d;
};

// Two tokens' super-block, for prefill: chunk by chunk, token a's 32 values then b's.
struct alignas(64) KPair {
  int8_t qs[8][64];
  int16_t y32[8][32];  // VPMADDUBSW(32, ·) of the same bytes
  int16_t bs32[16];    // a's eight sub-block sums, then b's
  alignas(64) float d[16];  // a's d eight times, then b's (read with one aligned 512-bit load)
  float negd[8];       // -(a's d) four times, then -(b's d)
};

size_t k_prepared_size(int64_t n_in, int64_t n_tokens) {
  const auto nb = static_cast<size_t>(n_in / kQK_K);
  return n_tokens == 1 ? nb * sizeof(KTok) : static_cast<size_t>((n_tokens + 1) / 2) * nb * sizeof(KPair);
}

void prepare_k_token(const void* act, int64_t n_in, KTok* out) {
  const int64_t nb = n_in / kQK_K;
  const auto* y = static_cast<const block_q8_K*>(act);
  const __m512i thirty_two = _mm512_set1_epi8(32);
  for (int64_t i = 0; i < nb; ++i) {
    std::memcpy(out[i].qs, y[i].qs, 256);
    for (int k = 0; k < 4; ++k)
      _mm512_store_si512(out[i].y32 + 32 * k,
                         _mm512_maddubs_epi16(thirty_two, _mm512_loadu_si512(y[i].qs + 64 * k)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out[i].bs32), bsums32(y[i]));
    out[i].d = y[i].d;
  }
}

void prepare_k_pairs(const void* act, int64_t n_in, int64_t n_tokens, KPair* pairs) {
  const int64_t nb = n_in / kQK_K;
  const size_t act_row = row_size(TensorType::Q8_K, n_in);
  const int64_t n_pairs = (n_tokens + 1) / 2;
  const __m256i thirty_two = _mm256_set1_epi8(32);
  for (int64_t p = 0; p < n_pairs; ++p)
    for (int half = 0; half < 2; ++half) {
      const int64_t t = 2 * p + half;
      const auto* y = reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(act) + t * act_row);
      for (int64_t i = 0; i < nb; ++i) {
        KPair& o = pairs[p * nb + i];
        if (t >= n_tokens) {
          for (int c = 0; c < 8; ++c) {
            std::memset(o.qs[c] + 32 * half, 0, 32);
            std::memset(o.y32[c] + 16 * half, 0, 32);
          }
          std::memset(o.bs32 + 8 * half, 0, 16);
          std::memset(o.d + 8 * half, 0, 32);
          std::memset(o.negd + 4 * half, 0, 16);
          continue;
        }
        for (int c = 0; c < 8; ++c) {
          const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 32 * c));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.qs[c] + 32 * half), q);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.y32[c] + 16 * half), _mm256_maddubs_epi16(thirty_two, q));
        }
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o.bs32 + 8 * half), bsums32(y[i]));
        _mm256_storeu_ps(o.d + 8 * half, _mm256_set1_ps(y[i].d));
        _mm_storeu_ps(o.negd + 4 * half, _mm_set1_ps(-y[i].d));
      }
    }
}

// Q4_K's four mins lanes summed as the dot product does: (m0 + m2) + (m1 + m3).
inline float sum_mins(__m128 m) {
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  m = _mm_add_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// vpermw index giving, for chunk pair (2k, 2k + 1) of Q4_K, scale 2k in the low 256 bits and
// 2k + 1 in the high ones.
inline __m512i q4k_pair_index(int k) {
  return _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * k)), _mm256_set1_epi16(static_cast<short>(2 * k + 1)), 1);
}
// For Q6_K chunks (c, c + 1): scales 2c, 2c+1, 2c+2, 2c+3, each over sixteen bytes (eight int16).
inline __m512i q6k_pair_index(int c) {
  auto quarter = [](int scale) { return _mm_set1_epi16(static_cast<short>(scale)); };
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(quarter(2 * c + 1), quarter(2 * c))),
                            _mm256_set_m128i(quarter(2 * c + 3), quarter(2 * c + 2)), 1);
}
// For one Q6_K chunk c in both halves (two tokens): scale 2c over bytes 0-15, 2c+1 over 16-31.
inline __m512i q6k_dup_index(int c) {
  const __m256i one = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(2 * c + 1)), _mm_set1_epi16(static_cast<short>(2 * c)));
  return _mm512_inserti64x4(_mm512_castsi256_si512(one), one, 1);
}

inline __m256i add_halves(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// Decode: R rows of Q4_K against one token.
template <int R>
void gemv_q4_K(int64_t nb, const block_q4_K* const* rows, const KTok* y, float* out, PassPrefetch pf) {
  __m256 acc[R];
  __m128 acc_m[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    acc_m[r] = _mm_setzero_ps();
  }
  const __m512i shift_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i) {
    pf.step();
    const KTok& t = y[i];
    const __m128i bs = _mm_load_si128(reinterpret_cast<const __m128i*>(t.bs32));
    for (int r = 0; r < R; ++r) {
      const block_q4_K& x = rows[r][i];
      __m128i sc8, mn8;
      q45_K_scales_mins(x.scales, &sc8, &mn8);
      const __m128i prod = _mm_madd_epi16(_mm_cvtepu8_epi16(mn8), bs);
      acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(-t.d * half_to_float(x.dmin)), _mm_cvtepi32_ps(prod), acc_m[r]);
      const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sc8));
      __m512i isum = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * k)));
        const __m512i q = _mm512_and_si512(_mm512_srlv_epi16(b, shift_hi), low4);
        const __m512i sc = _mm512_permutexvar_epi16(q4k_pair_index(k), sc16);
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(q, _mm512_load_si512(t.qs + 64 * k)), sc);
      }
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(t.d * half_to_float(x.d)), _mm256_cvtepi32_ps(add_halves(isum)), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]) + sum_mins(acc_m[r]);
}

// Decode: R rows of Q6_K against one token.
template <int R>
void gemv_q6_K(int64_t nb, const block_q6_K* const* rows, const KTok* y, float* out, PassPrefetch pf) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i bits45 = _mm512_set1_epi8(0x30);
  const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i shr_b = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  for (int64_t i = 0; i < nb; ++i) {
    pf.step();
    const KTok& t = y[i];
    for (int r = 0; r < R; ++r) {
      const block_q6_K& x = rows[r][i];
      const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales))));
      __m512i isum = _mm512_setzero_si512();
      for (int half = 0; half < 2; ++half) {
        const __m512i l = _mm512_loadu_si512(x.ql + 64 * half);
        const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * half)));
        // Chunks 4h, 4h+1: low nibbles, qh bits 0-1 / 2-3; chunks 4h+2, 4h+3: high nibbles, bits 4-5 / 6-7.
        const __m512i qa = _mm512_or_si512(_mm512_and_si512(l, low4), _mm512_and_si512(_mm512_sllv_epi16(h, shl_a), bits45));
        const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4),
                                           _mm512_and_si512(_mm512_srlv_epi16(h, shr_b), bits45));
        for (int j = 0; j < 2; ++j) {
          const int c = 4 * half + 2 * j;
          const __m512i p = _mm512_sub_epi16(_mm512_maddubs_epi16(j ? qb : qa, _mm512_load_si512(t.qs + 32 * c)),
                                             _mm512_load_si512(t.y32 + 16 * c));
          isum = _mm512_dpwssd_epi32(isum, p, _mm512_permutexvar_epi16(q6k_pair_index(c), sc16));
        }
      }
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(t.d * half_to_float(x.d)), _mm256_cvtepi32_ps(add_halves(isum)), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}

// Prefill: one row of Q4_K against RP pairs of tokens (y + p * nb).
template <int RP>
void tile_q4_K(int64_t nb, const block_q4_K* x_row, const KPair* y, int n_tokens, float* out, int64_t ys,
               PassPrefetch pf) {
  __m512 acc[RP];
  __m256 acc_m[RP];
  for (int p = 0; p < RP; ++p) {
    acc[p] = _mm512_setzero_ps();
    acc_m[p] = _mm256_setzero_ps();
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < nb; ++i) {
    pf.step();
    const block_q4_K& x = x_row[i];
    __m128i sc8, mn8;
    q45_K_scales_mins(x.scales, &sc8, &mn8);
    const __m256i min16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(mn8));
    const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sc8));
    __m512i isum[RP];
    for (int p = 0; p < RP; ++p) isum[p] = _mm512_setzero_si512();
    for (int k = 0; k < 4; ++k) {
      const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * k)));
      const __m512i lo = _mm512_and_si512(b, low4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
      const __m512i slo = _mm512_permutexvar_epi16(_mm512_set1_epi16(static_cast<short>(2 * k)), sc16);
      const __m512i shi = _mm512_permutexvar_epi16(_mm512_set1_epi16(static_cast<short>(2 * k + 1)), sc16);
      for (int p = 0; p < RP; ++p) {
        const KPair& t = y[p * nb + i];
        isum[p] = _mm512_dpwssd_epi32(isum[p], _mm512_maddubs_epi16(lo, _mm512_load_si512(t.qs[2 * k])), slo);
        isum[p] = _mm512_dpwssd_epi32(isum[p], _mm512_maddubs_epi16(hi, _mm512_load_si512(t.qs[2 * k + 1])), shi);
      }
    }
    const float d_w = half_to_float(x.d), dmin_w = half_to_float(x.dmin);
    for (int p = 0; p < RP; ++p) {
      const KPair& t = y[p * nb + i];
      const __m256i prod = _mm256_madd_epi16(min16, _mm256_load_si256(reinterpret_cast<const __m256i*>(t.bs32)));
      acc_m[p] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(t.negd), _mm256_set1_ps(dmin_w)), _mm256_cvtepi32_ps(prod), acc_m[p]);
      acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(t.d), _mm512_set1_ps(d_w)), _mm512_cvtepi32_ps(isum[p]), acc[p]);
    }
  }
  for (int p = 0; p < RP; ++p) {
    out[(2 * p) * ys] = hsum(_mm512_castps512_ps256(acc[p])) + sum_mins(_mm256_castps256_ps128(acc_m[p]));
    if (2 * p + 1 < n_tokens)
      out[(2 * p + 1) * ys] = hsum(_mm512_extractf32x8_ps(acc[p], 1)) + sum_mins(_mm256_extractf128_ps(acc_m[p], 1));
  }
}

// Prefill: one row of Q6_K against RP pairs of tokens.
template <int RP>
void tile_q6_K(int64_t nb, const block_q6_K* x_row, const KPair* y, int n_tokens, float* out, int64_t ys,
               PassPrefetch pf) {
  __m512 acc[RP];
  for (int p = 0; p < RP; ++p) acc[p] = _mm512_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  for (int64_t i = 0; i < nb; ++i) {
    pf.step();
    const block_q6_K& x = x_row[i];
    const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales))));
    __m512i isum[RP];
    for (int p = 0; p < RP; ++p) isum[p] = _mm512_setzero_si512();
    for (int half = 0; half < 2; ++half) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * half));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * half + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * half));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45))};
      for (int j = 0; j < 4; ++j) {
        const int c = 4 * half + j;
        const __m512i w = _mm512_broadcast_i64x4(q[j]);
        const __m512i sc = _mm512_permutexvar_epi16(q6k_dup_index(c), sc16);
        for (int p = 0; p < RP; ++p) {
          const KPair& t = y[p * nb + i];
          const __m512i prod = _mm512_sub_epi16(_mm512_maddubs_epi16(w, _mm512_load_si512(t.qs[c])), _mm512_load_si512(t.y32[c]));
          isum[p] = _mm512_dpwssd_epi32(isum[p], prod, sc);
        }
      }
    }
    const float d_w = half_to_float(x.d);
    for (int p = 0; p < RP; ++p) {
      const KPair& t = y[p * nb + i];
      acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(t.d), _mm512_set1_ps(d_w)), _mm512_cvtepi32_ps(isum[p]), acc[p]);
    }
  }
  for (int p = 0; p < RP; ++p) {
    out[(2 * p) * ys] = hsum(_mm512_castps512_ps256(acc[p]));
    if (2 * p + 1 < n_tokens) out[(2 * p + 1) * ys] = hsum(_mm512_extractf32x8_ps(acc[p], 1));
  }
}

constexpr int kKRows = 2;   // decode: rows per pass
constexpr int kKPairs = 4;  // prefill: token pairs per tile

template <typename Block, void (*kGemv1)(int64_t, const Block* const*, const KTok*, float*, PassPrefetch),
          void (*kGemvR)(int64_t, const Block* const*, const KTok*, float*, PassPrefetch)>
void gemv_k_rows(const void* w, int64_t n_in, const KTok* y, float* out, int64_t r0, int64_t r1, int64_t pf_end) {
  const int64_t nb = n_in / kQK_K;
  const auto* base = static_cast<const Block*>(w);
  int64_t r = r0;
  for (; r + kKRows <= r1; r += kKRows) {
    const Block* rows[kKRows];
    for (int k = 0; k < kKRows; ++k) rows[k] = base + (r + k) * nb;
    kGemvR(nb, rows, y, out + r, next_pass(w, nb * sizeof(Block), r + kKRows, kKRows, pf_end, nb));
  }
  for (; r < r1; ++r) {
    const Block* rows[1] = {base + r * nb};
    kGemv1(nb, rows, y, out + r, {});
  }
}

template <typename Block, typename Table>
void gemm_k_rows(const Table& tiles, const void* w, int64_t n_in, int64_t n_out, const KPair* pairs,
                 int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = n_in / kQK_K;
  const auto* base = static_cast<const Block*>(w);
  const int64_t n_pairs = (n_tokens + 1) / 2;
  const int64_t rb_rows = row_block(nb * sizeof(Block), 1);
  for (int64_t rb = r0; rb < r1; rb += rb_rows) {
    const int64_t re = std::min(r1, rb + rb_rows);
    for (int64_t p = 0; p < n_pairs; p += kKPairs) {
      const int np = static_cast<int>(std::min<int64_t>(kKPairs, n_pairs - p));
      const int nt = static_cast<int>(std::min<int64_t>(2 * kKPairs, n_tokens - 2 * p));
      for (int64_t r = rb; r < re; ++r) {
        const PassPrefetch pf = p == 0 ? next_pass(w, nb * sizeof(Block), r + 1, 1, n_out, nb) : PassPrefetch{};
        tiles[np - 1](nb, base + r * nb, pairs + p * nb, nt, y + 2 * p * n_out + r, n_out, pf);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Q4_K by block (kernels.h: by_block): sixteen rows in the int32 lanes of a register, as the
// Q4_0 / Q8_0 tiles. Per super-block and token: each sub-block's exact sum (eight VPDPBUSD of the
// rows' nibbles with four activation bytes broadcast, in two chains) times the rows' scales (one
// VPDPWSSD of the two chains' sums, each within 16 bits), added up;
// the sum of the mins by four VPDPWSSD (the rows' pairs of mins against the token's pairs of
// sums of 32); then the two float steps of dot_q4_K_by_block.

// One token's super-block: the 256 values, the sums of its sub-blocks in pairs (sub-block 2k in
// the low 16 bits of pair k, 2k + 1 in the high ones; Q4_K's four pairs of sums of 32, Q6_K's
// eight of sums of 16), and the scale.
struct KTokBlock {
  int8_t qs[256];
  int32_t sum_pairs[8];
  float d;
};

size_t k_tok_blocks_size(int64_t n_in, int64_t n_tokens) {
  return static_cast<size_t>(n_tokens * (n_in / kQK_K)) * sizeof(KTokBlock);
}

// Layout [token][block].
void prepare_k_tok_blocks(TensorType w, const void* act, int64_t n_in, int64_t n_tokens, KTokBlock* out) {
  const int sub = w == TensorType::Q6_K ? 1 : 2;  // sums of 16 in a sub-block
  const int64_t nb = n_in / kQK_K;
  const size_t act_row = row_size(TensorType::Q8_K, n_in);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* y = reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(act) + t * act_row);
    for (int64_t i = 0; i < nb; ++i) {
      KTokBlock& o = out[t * nb + i];
      std::memcpy(o.qs, y[i].qs, 256);
      for (int k = 0; k < 8 / sub; ++k) {
        int lo = 0, hi = 0;
        for (int j = 0; j < sub; ++j) {
          lo += y[i].bsums[2 * k * sub + j];
          hi += y[i].bsums[(2 * k + 1) * sub + j];
        }
        o.sum_pairs[k] = static_cast<int32_t>(static_cast<uint16_t>(lo) | (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
      }
      for (int k = 8 / sub; k < 8; ++k) o.sum_pairs[k] = 0;
      o.d = y[i].d;
    }
  }
}

// A Q4_K matrix packed for these tiles (pack_weights), for row counts that are multiples of 16:
// the rows in groups of sixteen; per super-block of a group kBytes: the nibbles as 32 words
// (word 8j + c, lane k: bytes 4c..4c+3 of row k's 32 bytes of chunk j, whose low nibbles are
// sub-block 2j and high nibbles sub-block 2j + 1), the scales [sub-block][row] (bytes), the
// mins [pair][row][2] (bytes: mins 2k and 2k + 1), then d and dmin of the rows (fp16).
struct Q4_KPacked {
  static constexpr int64_t kScales = 32 * 64;
  static constexpr int64_t kMins = kScales + 8 * 16;
  static constexpr int64_t kD = kMins + 4 * 32;
  static constexpr int64_t kDmin = kD + 32;
  static constexpr int64_t kBytes = kDmin + 32;  // 2368, against 16 x 144 in the file
};

// A group of sixteen rows (rows[k]: row k's first super-block).
void pack_q4_K_group(int64_t nb, const block_q4_K* const* rows, uint8_t* out) {
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* o = out + b * Q4_KPacked::kBytes;
    for (int k = 0; k < 16; ++k) {
      const block_q4_K& x = rows[k][b];
      for (int j = 0; j < 4; ++j)
        for (int c = 0; c < 8; ++c) std::memcpy(o + (8 * j + c) * 64 + 4 * k, x.qs + 32 * j + 4 * c, 4);
      for (int s = 0; s < 8; ++s) {
        uint8_t scale, min;
        unpack_scale_min_k4(s, x.scales, &scale, &min);
        o[Q4_KPacked::kScales + 16 * s + k] = scale;
        o[Q4_KPacked::kMins + 32 * (s / 2) + 2 * k + s % 2] = min;
      }
      std::memcpy(o + Q4_KPacked::kD + 2 * k, &x.d, 2);
      std::memcpy(o + Q4_KPacked::kDmin + 2 * k, &x.dmin, 2);
    }
  }
}

// The float steps after a Q4_K super-block's integer sums (16 rows' lanes), for one token: the
// mins' sum by VPDPWSSD, then acc = fma(float(sum), dw * d, acc) and acc - float(mins) * (dmin * d)
// fused, as dot_q4_K_by_block.
struct Q4_KStep {
  __m512i mins[4];
  __m512 dw, dmin;
  explicit Q4_KStep(const uint8_t* o) {  // o: the super-block in the packed group
    for (int k = 0; k < 4; ++k)
      mins[k] = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + Q4_KPacked::kMins + 32 * k)));
    dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + Q4_KPacked::kD)));
    dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + Q4_KPacked::kDmin)));
  }
  __m512 operator()(__m512 acc, __m512i sum, const KTokBlock& x) const {
    __m512i m = _mm512_setzero_si512();
    for (int k = 0; k < 4; ++k) m = _mm512_dpwssd_epi32(m, mins[k], _mm512_set1_epi32(x.sum_pairs[k]));
    const __m512 d = _mm512_set1_ps(x.d);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, d), acc);
    return _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, d), acc);
  }
};

// A packed group of sixteen rows against RT tokens (act + t * act_stride: token t's
// super-blocks); y[t * ys + k] for k < n_rows.
template <int RT>
void q4_K_rows16(int64_t nb, const uint8_t* group, int n_rows, const KTokBlock* act, int64_t act_stride, float* y,
                 int64_t ys, PassPrefetch pf) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 acc[RT];
  for (int t = 0; t < RT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* o = group + b * Q4_KPacked::kBytes;
    __m512i sum[RT];
    for (int t = 0; t < RT; ++t) sum[t] = _mm512_setzero_si512();
    for (int s = 0; s < 8; ++s) {
      pf.step();
      const int j = s / 2;
      __m512i w[8];
      for (int c = 0; c < 8; ++c) {
        const __m512i words = _mm512_loadu_si512(o + (8 * j + c) * 64);
        w[c] = _mm512_and_si512(s % 2 == 0 ? words : _mm512_srli_epi16(words, 4), low4);
      }
      // Each row's scale in both 16-bit halves of its lane, for VPDPWSSD below.
      const __m512i scale32 =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(o + Q4_KPacked::kScales + 16 * s)));
      const __m512i scale = _mm512_or_si512(scale32, _mm512_slli_epi32(scale32, 16));
      for (int t = 0; t < RT; ++t) {
        const int8_t* q = act[t * act_stride + b].qs + 32 * s;
        __m512i part[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (int c = 0; c < 8; ++c) part[c % 2] = dpbusd_bcast(part[c % 2], w[c], q + 4 * c);
        // Each chain sums sixteen products of a nibble and an activation byte, so it fits in 16
        // bits (|sum| <= 16 * 15 * 128 = 30720): the two go into the halves of each lane and one
        // VPDPWSSD adds both times the scale, the same integer as VPMULLD of their sum (two
        // micro-ops, ten cycles of latency).
        const __m512i halves = _mm512_mask_blend_epi16(0xAAAAAAAA, part[0], _mm512_slli_epi32(part[1], 16));
        sum[t] = _mm512_dpwssd_epi32(sum[t], halves, scale);
      }
    }
    const Q4_KStep step(o);
    for (int t = 0; t < RT; ++t) acc[t] = step(acc[t], sum[t], act[t * act_stride + b]);
  }
  const __mmask16 keep = static_cast<__mmask16>((1u << n_rows) - 1);
  for (int t = 0; t < RT; ++t) _mm512_mask_storeu_ps(y + t * ys, keep, acc[t]);
}



// Q4_K by block on AMX (prefill, 16 tokens at a time). TDPBSSD cannot scale its sums by column,
// so each row's scale goes into B: p = nibble * scale (0..945) is split into lo = p & 127 and
// hi = p >> 7, two signed-byte B tiles per chunk of 64 elements (two sub-blocks), and one pair of
// C tiles accumulates the whole super-block: sum = C_lo + 128 * C_hi, the exact integer of
// q4_K_rows16. The mins and the float steps are then q4_K_rows16's.

// One super-block of a group of sixteen rows, ready for the tiles: per chunk j of 64 elements,
// B_lo and B_hi (16 rows of 64 bytes: row r, lane k holds row k's elements 4r..4r+3 of the chunk).
struct alignas(64) AmxKBlock {
  uint8_t lo[4][16][64];
  uint8_t hi[4][16][64];
};

// A B-tile row and its partner from sixteen rows' values (bytes, lane k = row k): each value
// minus offset times its row's scale (`scale`: row k's in both 16-bit halves of lane k), the
// product p split into lo = p & 127 and hi = p >> 7 (arithmetic), both signed bytes.
inline void scaled_split(__m512i values, int offset, __m512i scale, uint8_t* lo_row, uint8_t* hi_row) {
  const __m512i byte = _mm512_set1_epi16(0x00FF), seven = _mm512_set1_epi16(127), off = _mm512_set1_epi16(static_cast<short>(offset));
  const __m512i p_even = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_and_si512(values, byte), off), scale);
  const __m512i p_odd = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_srli_epi16(values, 8), off), scale);
  _mm512_store_si512(lo_row, _mm512_or_si512(_mm512_and_si512(p_even, seven), _mm512_slli_epi16(_mm512_and_si512(p_odd, seven), 8)));
  _mm512_store_si512(hi_row, _mm512_or_si512(_mm512_and_si512(_mm512_srai_epi16(p_even, 7), byte),
                                             _mm512_slli_epi16(_mm512_srai_epi16(p_odd, 7), 8)));
}

// A packed Q4_K group (Q4_KPacked) as AmxKBlocks: nibble * scale (0..945) split.
void amx_unpack_k_group(int64_t nb, const uint8_t* group, AmxKBlock* out) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* o = group + b * Q4_KPacked::kBytes;
    for (int s = 0; s < 8; ++s) {
      const int j = s / 2;
      // Row k's scale in both 16-bit halves of lane k.
      const __m512i s32 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(o + Q4_KPacked::kScales + 16 * s)));
      const __m512i scale = _mm512_or_si512(s32, _mm512_slli_epi32(s32, 16));
      for (int c = 0; c < 8; ++c) {
        const __m512i words = _mm512_loadu_si512(o + (8 * j + c) * 64);
        const __m512i q = _mm512_and_si512(s % 2 == 0 ? words : _mm512_srli_epi16(words, 4), low4);
        const int r = 8 * (s % 2) + c;
        scaled_split(q, 0, scale, out[b].lo[j][r], out[b].hi[j][r]);
      }
    }
  }
}

// Q6_K by block: sixteen rows in the int32 lanes, as Q4_K. A packed group per super-block holds
// the rows' ql and qh as words (lane k = row k) and their scales in pairs. Per token: each
// sub-block of 16's sum of the unsigned 6-bit values times the activations (four VPDPBUSD),
// times the rows' scales (VPMULLD), added up; the values' offset of 32 comes off once per
// super-block as 32 * (scales . the activations' sums of 16) (eight VPDPWSSD); then one float
// step.
struct Q6_KPacked {
  static constexpr int64_t kQh = 32 * 64;       // ql: 32 words (bytes 4c..4c+3 of 128)
  static constexpr int64_t kScales = kQh + 16 * 64;  // qh: 16 words (of 64 bytes)
  static constexpr int64_t kD = kScales + 8 * 32;    // scales [pair m][row][2]: 2m and 2m + 1
  static constexpr int64_t kBytes = kD + 32;         // 3360, as 16 x 210 in the file
};

void pack_q6_K_group(int64_t nb, const block_q6_K* const* rows, uint8_t* out) {
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* o = out + b * Q6_KPacked::kBytes;
    for (int k = 0; k < 16; ++k) {
      const block_q6_K& x = rows[k][b];
      for (int c = 0; c < 32; ++c) std::memcpy(o + c * 64 + 4 * k, x.ql + 4 * c, 4);
      for (int c = 0; c < 16; ++c) std::memcpy(o + Q6_KPacked::kQh + c * 64 + 4 * k, x.qh + 4 * c, 4);
      for (int g = 0; g < 16; ++g) o[Q6_KPacked::kScales + 32 * (g / 2) + 2 * k + g % 2] = static_cast<uint8_t>(x.scales[g]);
      std::memcpy(o + Q6_KPacked::kD + 2 * k, &x.d, 2);
    }
  }
}

// Sixteen rows' unsigned 6-bit values of elements e..e+3 (e a multiple of 4) of a packed
// super-block, as bytes in lane order (lane k = row k).
inline __m512i q6_values(const uint8_t* o, int e) {
  const int half = e / 128, quarter = e % 128 / 32, l = e % 32;
  const __m512i ql = _mm512_loadu_si512(o + (64 * half + 32 * (quarter % 2) + l) / 4 * 64);
  const __m512i qh = _mm512_loadu_si512(o + Q6_KPacked::kQh + (32 * half + l) / 4 * 64);
  const __m512i low = _mm512_and_si512(quarter < 2 ? ql : _mm512_srli_epi16(ql, 4), _mm512_set1_epi8(0x0F));
  const __m512i high = _mm512_and_si512(_mm512_srli_epi16(qh, 2 * quarter), _mm512_set1_epi8(0x03));
  return _mm512_or_si512(low, _mm512_slli_epi16(high, 4));
}

// Sub-block g's scale of each row as int32 lanes, from the pair layout.
inline __m512i q6_scale(const uint8_t* o, int g) {
  const __m512i pair = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + Q6_KPacked::kScales + 32 * (g / 2))));
  return g % 2 == 0 ? _mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16) : _mm512_srai_epi32(pair, 16);
}

template <int RT>
void q6_K_rows16(int64_t nb, const uint8_t* group, int n_rows, const KTokBlock* act, int64_t act_stride, float* y,
                 int64_t ys, PassPrefetch pf) {
  __m512 acc[RT];
  for (int t = 0; t < RT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* o = group + b * Q6_KPacked::kBytes;
    __m512i sum[RT];
    for (int t = 0; t < RT; ++t) sum[t] = _mm512_setzero_si512();
    // Unrolled, so that q6_values' offsets are constants (GCC 12 left this loop rolled, with the
    // offsets computed on the ports the vector work needs).
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      pf.step();
      __m512i u[4];
      for (int i = 0; i < 4; ++i) u[i] = q6_values(o, 16 * g + 4 * i);
      const __m512i scale = q6_scale(o, g);
      for (int t = 0; t < RT; ++t) {
        const int8_t* q = act[t * act_stride + b].qs + 16 * g;
        __m512i part[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (int i = 0; i < 4; ++i) part[i % 2] = dpbusd_bcast(part[i % 2], u[i], q + 4 * i);
        sum[t] = _mm512_add_epi32(sum[t], _mm512_mullo_epi32(_mm512_add_epi32(part[0], part[1]), scale));
      }
    }
    __m512i pairs[8];
    for (int m = 0; m < 8; ++m)
      pairs[m] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + Q6_KPacked::kScales + 32 * m)));
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + Q6_KPacked::kD)));
    for (int t = 0; t < RT; ++t) {
      const KTokBlock& x = act[t * act_stride + b];
      __m512i offset = _mm512_setzero_si512();
      for (int m = 0; m < 8; ++m) offset = _mm512_dpwssd_epi32(offset, pairs[m], _mm512_set1_epi32(x.sum_pairs[m]));
      const __m512i s = _mm512_sub_epi32(sum[t], _mm512_slli_epi32(offset, 5));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(x.d)), acc[t]);
    }
  }
  const __mmask16 keep = static_cast<__mmask16>((1u << n_rows) - 1);
  for (int t = 0; t < RT; ++t) _mm512_mask_storeu_ps(y + t * ys, keep, acc[t]);
}

// A packed Q6_K group as AmxKBlocks: (value - 32) * scale (-4096..4032) split, hi in -32..31.
void amx_unpack_q6_group(int64_t nb, const uint8_t* group, AmxKBlock* out) {
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* o = group + b * Q6_KPacked::kBytes;
    for (int g = 0; g < 16; ++g) {
      const __m512i s32 = q6_scale(o, g);
      const __m512i scale = _mm512_or_si512(_mm512_and_si512(s32, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(s32, 16));
      for (int i = 0; i < 4; ++i) {
        const int e = 16 * g + 4 * i;
        scaled_split(q6_values(o, e), 32, scale, out[b].lo[e / 64][e % 64 / 4], out[b].hi[e / 64][e % 64 / 4]);
      }
    }
  }
}

using KByBlockFn = void (*)(int64_t, const uint8_t*, int, const KTokBlock*, int64_t, float*, int64_t, PassPrefetch);
template <typename K, size_t... I>
constexpr std::array<KByBlockFn, sizeof...(I)> k_by_block_tiles(std::index_sequence<I...>) {
  return {K::template rows16<static_cast<int>(I) + 1>...};
}

// The two K-quant formats by block, for the tiles below.
struct Q4_KByBlock {
  using Block = block_q4_K;
  static constexpr int64_t kBytes = Q4_KPacked::kBytes;
  static constexpr int kSteps = 8;  // prefetch steps per super-block (q4_K_rows16)
  static constexpr auto pack_group = pack_q4_K_group;
  static constexpr auto amx_unpack = amx_unpack_k_group;
  template <int RT>
  static constexpr auto rows16 = q4_K_rows16<RT>;
};
struct Q6_KByBlock {
  using Block = block_q6_K;
  static constexpr int64_t kBytes = Q6_KPacked::kBytes;
  static constexpr int kSteps = 16;
  static constexpr auto pack_group = pack_q6_K_group;
  static constexpr auto amx_unpack = amx_unpack_q6_group;
  template <int RT>
  static constexpr auto rows16 = q6_K_rows16<RT>;
};

// A K-quant matrix in K's packed layout, group by group (pack_weights).
template <typename K>
void pack_k(const void* w, int64_t n_in, int64_t n_out, uint8_t* out) {
  const int64_t nb = n_in / kQK_K;
  const auto* base = static_cast<const typename K::Block*>(w);
  for (int64_t g = 0; g < n_out / 16; ++g) {
    const typename K::Block* rows[16];
    for (int k = 0; k < 16; ++k) rows[k] = base + (g * 16 + k) * nb;
    K::pack_group(nb, rows, out + g * nb * K::kBytes);
  }
}

// A group of sixteen rows (its AmxKBlocks, and the packed group for the scales and mins) against
// n_tiles x 16 tokens; y[t * ys + k] for k < n_rows.
template <typename K>
__attribute__((target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,amx-tile,amx-int8")))
void amx_k_group(int64_t nb, const AmxKBlock* blocks, const uint8_t* group, int n_rows, const KTokBlock* act,
                 int64_t act_stride, int64_t n_tiles, float* y, int64_t ys) {
  constexpr bool kQ4 = std::is_same_v<K, Q4_KByBlock>;
  amx_configure({{16, 64}, {16, 64}, {16, 64}, {16, 64}, {16, 64}});  // C_lo, C_hi, A, B_lo, B_hi
  const int64_t a_stride = act_stride * static_cast<int64_t>(sizeof(KTokBlock));
  const __mmask16 keep = static_cast<__mmask16>((1u << n_rows) - 1);
  alignas(64) int32_t c_lo[16][16], c_hi[16][16];
  for (int64_t i = 0; i < n_tiles; ++i) {
    const KTokBlock* a = act + i * 16 * act_stride;
    __m512 acc[16];
    for (auto& v : acc) v = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      _tile_zero(0);
      _tile_zero(1);
      for (int j = 0; j < 4; ++j) {
        _tile_loadd(2, a[b].qs + 64 * j, a_stride);
        _tile_loadd(3, blocks[b].lo[j], 64);
        _tile_dpbssd(0, 2, 3);
        _tile_loadd(4, blocks[b].hi[j], 64);
        _tile_dpbssd(1, 2, 4);
      }
      _tile_stored(0, c_lo, 64);
      _tile_stored(1, c_hi, 64);
      const uint8_t* o = group + b * K::kBytes;
      if constexpr (kQ4) {
        const Q4_KStep step(o);
        for (int t = 0; t < 16; ++t) {
          const __m512i sum = _mm512_add_epi32(_mm512_load_si512(c_lo[t]), _mm512_slli_epi32(_mm512_load_si512(c_hi[t]), 7));
          acc[t] = step(acc[t], sum, a[t * act_stride + b]);
        }
      } else {
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + Q6_KPacked::kD)));
        for (int t = 0; t < 16; ++t) {
          const __m512i sum = _mm512_add_epi32(_mm512_load_si512(c_lo[t]), _mm512_slli_epi32(_mm512_load_si512(c_hi[t]), 7));
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(a[t * act_stride + b].d)), acc[t]);
        }
      }
    }
    for (int t = 0; t < 16; ++t) _mm512_mask_storeu_ps(y + (i * 16 + t) * ys, keep, acc[t]);
  }
  _tile_release();
}

// packed: the matrix in K's packed layout, or null (the rows are then packed on the way in, a
// row block at a time); with it, r0 and r1 must be multiples of 16.
template <typename K>
void k_by_block_rows(const void* w, const void* packed, int64_t n_in, int64_t n_out, const KTokBlock* act,
                        int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  static constexpr auto tiles = k_by_block_tiles<K>(std::make_index_sequence<kByBlockTokens>());
  const int64_t nb = n_in / kQK_K;
  const int64_t group_bytes = nb * K::kBytes;
  const auto* base = static_cast<const uint8_t*>(packed);
  // More tokens than one tile: rows in blocks that stay in the L2 cache while the token tiles
  // pass over them (a tile's activations stay in L1 meanwhile); the first tile reads them from
  // memory and prefetches the next rows.
  const int64_t rb_rows = n_tokens > kByBlockTokens ? row_block(group_bytes / 16, 16) : r1 - r0;
  thread_local AlignedVector<uint8_t> scratch;
  const auto* rows_base = static_cast<const typename K::Block*>(w);
  // AMX takes whole tiles of 16 tokens, a group of rows at a time; the tiles above the rest.
  const int64_t amx_tokens = n_tokens >= 16 && cpu_has_amx_int8() ? n_tokens / 16 * 16 : 0;
  if (amx_tokens > 0) {
    thread_local AlignedVector<AmxKBlock> blocks;
    if (blocks.size() < static_cast<size_t>(nb)) blocks.resize(nb);
    for (int64_t r = r0; r < r1; r += 16) {
      const int nr = static_cast<int>(std::min<int64_t>(16, r1 - r));
      const uint8_t* group = base != nullptr ? base + r / 16 * group_bytes : nullptr;
      if (group == nullptr) {
        const typename K::Block* rows[16];  // the rows past r1 repeat the last one
        for (int k = 0; k < 16; ++k) rows[k] = rows_base + std::min(r + k, r1 - 1) * nb;
        if (scratch.size() < static_cast<size_t>(group_bytes)) scratch.resize(group_bytes);
        K::pack_group(nb, rows, scratch.data());
        group = scratch.data();
      }
      K::amx_unpack(nb, group, blocks.data());
      amx_k_group<K>(nb, blocks.data(), group, nr, act, nb, amx_tokens / 16, y + r, n_out);
    }
    if (amx_tokens == n_tokens) return;
    act += amx_tokens * nb;
    y += amx_tokens * n_out;
    n_tokens -= amx_tokens;
  }
  for (int64_t rb = r0; rb < r1; rb += rb_rows) {
    const int64_t re = std::min(r1, rb + rb_rows);
    const uint8_t* block = base != nullptr ? base + rb / 16 * group_bytes : nullptr;
    if (block == nullptr) {
      const int64_t n_groups = (re - rb + 15) / 16;
      if (scratch.size() < static_cast<size_t>(n_groups * group_bytes)) scratch.resize(n_groups * group_bytes);
      for (int64_t g = 0; g < n_groups; ++g) {
        const typename K::Block* rows[16];  // the rows past re repeat the last one
        for (int k = 0; k < 16; ++k) rows[k] = rows_base + std::min(rb + 16 * g + k, re - 1) * nb;
        K::pack_group(nb, rows, scratch.data() + g * group_bytes);
      }
      block = scratch.data();
    }
    for (int64_t t = 0; t < n_tokens; t += kByBlockTokens) {
      const int nt = static_cast<int>(std::min<int64_t>(kByBlockTokens, n_tokens - t));
      for (int64_t r = rb; r < re; r += 16) {
        const int nr = static_cast<int>(std::min<int64_t>(16, re - r));
        // A step per sub-block (K::kSteps a super-block): a whole super-block's prefetches at once
        // fill the line fill buffers and stall (Q6_K decode: 40% of its samples on a prefetch).
        const PassPrefetch pf = t == 0 && base != nullptr ? next_pass(base, group_bytes / 16, r + 16, 16, n_out, nb * K::kSteps)
                                                          : PassPrefetch{};
        tiles[nt - 1](nb, block + (r - rb) / 16 * group_bytes, nr, act + t * nb, nb, y + t * n_out + r, n_out, pf);
      }
    }
  }
}

bool kquant_gemm(TensorType type, const void* w, int64_t n_in, int64_t n_out, const void* prepared,
                 int64_t n_tokens, float* y, int64_t r0, int64_t r1) {
  if (type != TensorType::Q4_K && type != TensorType::Q6_K) return false;
  if (n_tokens == 1) {
    const auto* t = static_cast<const KTok*>(prepared);
    if (type == TensorType::Q4_K) gemv_k_rows<block_q4_K, gemv_q4_K<1>, gemv_q4_K<kKRows>>(w, n_in, t, y, r0, r1, n_out);
    else gemv_k_rows<block_q6_K, gemv_q6_K<1>, gemv_q6_K<kKRows>>(w, n_in, t, y, r0, r1, n_out);
    return true;
  }
  const auto* pairs = static_cast<const KPair*>(prepared);
  if (type == TensorType::Q4_K) {
    using Fn = void (*)(int64_t, const block_q4_K*, const KPair*, int, float*, int64_t, PassPrefetch);
    static constexpr Fn tiles[kKPairs] = {tile_q4_K<1>, tile_q4_K<2>, tile_q4_K<3>, tile_q4_K<4>};
    gemm_k_rows<block_q4_K>(tiles, w, n_in, n_out, pairs, n_tokens, y, r0, r1);
  } else {
    using Fn = void (*)(int64_t, const block_q6_K*, const KPair*, int, float*, int64_t, PassPrefetch);
    static constexpr Fn tiles[kKPairs] = {tile_q6_K<1>, tile_q6_K<2>, tile_q6_K<3>, tile_q6_K<4>};
    gemm_k_rows<block_q6_K>(tiles, w, n_in, n_out, pairs, n_tokens, y, r0, r1);
  }
  return true;
}

}  // namespace

bool avx512_has_gemm(TensorType w, int64_t n_in, int64_t n_tokens) {
  switch (w) {
    case TensorType::F32:
    case TensorType::F16: return n_tokens >= 2 ? n_in % 16 == 0 : n_in % 64 == 0;
    case TensorType::BF16: return n_tokens >= 2 ? n_in % 32 == 0 : n_in % 64 == 0;
    case TensorType::Q4_0:
    case TensorType::Q8_0: return n_in % kQK8_0 == 0;
    case TensorType::Q4_K:
    case TensorType::Q6_K: return n_in % kQK_K == 0;
    default: return false;
  }
}

// Whether some matrices of this type are multiplied by block (kernels.h: by_block), so that
// their activations need token blocks.
bool by_block_type(TensorType w) {
  return w == TensorType::Q4_0 ||
         ((w == TensorType::Q8_0 || w == TensorType::Q4_K || w == TensorType::Q6_K) && amx_arithmetic());
}

// Where a K-quant product's token blocks start: after the pairs (or decode's token), on a cache line.
size_t k_blocks_at(int64_t n_in, int64_t n_tokens) { return (k_prepared_size(n_in, n_tokens) + 63) / 64 * 64; }

size_t avx512_gemm_prepared_size(TensorType w, int64_t n_in, int64_t n_tokens) {
  switch (w) {
    case TensorType::F16: return static_cast<size_t>(n_in * n_tokens) * sizeof(float);
    case TensorType::BF16:
      return bf16_split_tiles(n_in, n_tokens) ? static_cast<size_t>(n_in * n_tokens) * sizeof(float) : 0;
    // The pairs (for matrices not multiplied by block), then the token blocks (for those that are).
    case TensorType::Q4_0:
    case TensorType::Q8_0:
      return pairs_size(n_in, n_tokens) + (by_block_type(w) ? tok_blocks_size(n_in, n_tokens) : 0);
    // The pairs (or decode's token), then for Q4_K multiplied by block the token blocks.
    case TensorType::Q4_K:
    case TensorType::Q6_K:
      return k_blocks_at(n_in, n_tokens) + (by_block_type(w) ? k_tok_blocks_size(n_in, n_tokens) : 0);
    default: return 0;
  }
}

void avx512_gemm_prepare(TensorType w, const void* act, int64_t n_in, int64_t n_tokens, bool pairs, void* out) {
  switch (w) {
    case TensorType::F16:
      fp16_to_fp32_row(static_cast<const uint16_t*>(act), static_cast<float*>(out), n_in * n_tokens);
      break;
    case TensorType::BF16:
      split_bf16(static_cast<const uint16_t*>(act), static_cast<float*>(out), n_in * n_tokens);
      break;
    case TensorType::Q4_0:
    case TensorType::Q8_0: {
      // The pairs serve only matrices not multiplied by block.
      const bool q4 = w == TensorType::Q4_0;
      if (pairs) prepare_pairs(act, n_in, n_tokens, q4 ? Q4_0Rows::kOffset : Q8_0Rows::kOffset, static_cast<PairBlock*>(out));
      if (by_block_type(w))
        prepare_tok_blocks(act, n_in, n_tokens, q4 ? Q4_0ByBlock::kOffset : Q8_0ByBlock::kOffset,
                           reinterpret_cast<TokBlock*>(static_cast<uint8_t*>(out) + pairs_size(n_in, n_tokens)));
      break;
    }
    case TensorType::Q4_K:
    case TensorType::Q6_K:
      if (pairs) {
        if (n_tokens == 1) prepare_k_token(act, n_in, static_cast<KTok*>(out));
        else prepare_k_pairs(act, n_in, n_tokens, static_cast<KPair*>(out));
      }
      if (by_block_type(w))
        prepare_k_tok_blocks(w, act, n_in, n_tokens,
                             reinterpret_cast<KTokBlock*>(static_cast<uint8_t*>(out) + k_blocks_at(n_in, n_tokens)));
      break;
    default: break;
  }
}

bool avx512_gemm_rows(TensorType w_type, const void* w, const void* packed, int64_t n_in, int64_t n_out,
                      const void* act, const void* prepared, int64_t n_tokens, float* y, int64_t row_begin,
                      int64_t row_end) {
  if (!avx512_has_gemm(w_type, n_in, n_tokens)) return false;
  if (row_begin >= row_end || n_tokens <= 0) return true;
  switch (w_type) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
      return float_gemm(w_type, w, n_in, n_out, act, prepared, n_tokens, y, row_begin, row_end);
    case TensorType::Q4_K:
    case TensorType::Q6_K:
      if (by_block(w_type, n_out)) {
        const auto* tok = reinterpret_cast<const KTokBlock*>(static_cast<const uint8_t*>(prepared) + k_blocks_at(n_in, n_tokens));
        if (packed != nullptr && (row_begin % 16 != 0 || row_end % 16 != 0)) packed = nullptr;
        if (w_type == TensorType::Q4_K) k_by_block_rows<Q4_KByBlock>(w, packed, n_in, n_out, tok, n_tokens, y, row_begin, row_end);
        else k_by_block_rows<Q6_KByBlock>(w, packed, n_in, n_out, tok, n_tokens, y, row_begin, row_end);
        return true;
      }
      return kquant_gemm(w_type, w, n_in, n_out, prepared, n_tokens, y, row_begin, row_end);
    case TensorType::Q4_0:
    case TensorType::Q8_0:
      if (by_block(w_type, n_out)) {
        const auto* tok = reinterpret_cast<const TokBlock*>(static_cast<const uint8_t*>(prepared) + pairs_size(n_in, n_tokens));
        if (packed != nullptr && (row_begin % 16 != 0 || row_end % 16 != 0)) packed = nullptr;
        if (w_type == TensorType::Q4_0) by_block_rows<Q4_0ByBlock>(w, packed, n_in, n_out, tok, n_tokens, y, row_begin, row_end);
        else by_block_rows<Q8_0ByBlock>(w, packed, n_in, n_out, tok, n_tokens, y, row_begin, row_end);
        return true;
      }
      return quant32_gemm(w_type, w, n_in, n_out, prepared, n_tokens, y, row_begin, row_end);
    default: return quant32_gemm(w_type, w, n_in, n_out, prepared, n_tokens, y, row_begin, row_end);
  }
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
#pragma GCC diagnostic pop

namespace endless::kernels {

bool has_gemm(TensorType w_type, int64_t n_in, int64_t n_tokens) {
  return active_isa() == Isa::avx512 && detail::avx512_has_gemm(w_type, n_in, n_tokens);
}

void GemmInput::prepare(TensorType w_type, const void* act, int64_t n_in, int64_t n_tokens, bool by_block_only) {
  act_ = act;
  w_type_ = w_type;
  n_in_ = n_in;
  n_tokens_ = n_tokens;
  prepared_ = nullptr;
  has_pairs_ = !(by_block_only && (w_type == TensorType::Q4_0 || w_type == TensorType::Q8_0 ||
                                   w_type == TensorType::Q4_K || w_type == TensorType::Q6_K));
  if (!has_gemm(w_type, n_in, n_tokens)) return;
  const size_t bytes = detail::avx512_gemm_prepared_size(w_type, n_in, n_tokens);
  if (bytes == 0) return;
  if (bytes > capacity_) {
    buffer_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
    if (!buffer_) throw std::bad_alloc();
    capacity_ = (bytes + 63) / 64 * 64;
  }
  detail::avx512_gemm_prepare(w_type, act, n_in, n_tokens, has_pairs_, buffer_.get());
  prepared_ = buffer_.get();
}

size_t packed_weights_size(TensorType w_type, int64_t n_in, int64_t n_out) {
  if (active_isa() != Isa::avx512 || !by_block(w_type, n_out) || n_out % 16 != 0 || n_in % info(w_type).block_size != 0)
    return 0;
  if (w_type == TensorType::Q4_K) return static_cast<size_t>(n_out / 16 * (n_in / kQK_K) * detail::Q4_KPacked::kBytes);
  if (w_type == TensorType::Q6_K) return static_cast<size_t>(n_out / 16 * (n_in / kQK_K) * detail::Q6_KPacked::kBytes);
  return row_size(w_type, n_in) * static_cast<size_t>(n_out);
}

void pack_weights(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, void* out) {
  if (packed_weights_size(w_type, n_in, n_out) == 0)
    fail("pack_weights: no packed layout for ", type_name(w_type), " [", n_in, ", ", n_out, "] here");
  if (w_type == TensorType::Q4_K) detail::pack_k<detail::Q4_KByBlock>(w, n_in, n_out, static_cast<uint8_t*>(out));
  else if (w_type == TensorType::Q6_K) detail::pack_k<detail::Q6_KByBlock>(w, n_in, n_out, static_cast<uint8_t*>(out));
  else if (w_type == TensorType::Q4_0) detail::pack_by_block<detail::Q4_0ByBlock>(w, n_in, n_out, static_cast<uint8_t*>(out));
  else detail::pack_by_block<detail::Q8_0ByBlock>(w, n_in, n_out, static_cast<uint8_t*>(out));
}

bool wants_aligned_copy(TensorType w_type, const void* data) {
  return active_isa() == Isa::avx512 && (w_type == TensorType::F32 || w_type == TensorType::BF16) &&
         reinterpret_cast<uintptr_t>(data) % 64 != 0;
}

bool gemm_rows(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const GemmInput& in,
               float* y, int64_t row_begin, int64_t row_end, const void* packed) {
  if (active_isa() != Isa::avx512 || in.w_type() != w_type || in.n_in() != n_in) return false;
  if (!in.has_pairs() && !by_block(w_type, n_out)) return false;
  return detail::avx512_gemm_rows(w_type, w, packed, n_in, n_out, in.act(), in.prepared(), in.n_tokens(), y,
                                  row_begin, row_end);
}

bool gemm_rows(TensorType w_type, const void* w, int64_t n_in, int64_t n_out, const void* act,
               int64_t n_tokens, float* y, int64_t row_begin, int64_t row_end) {
  if (!has_gemm(w_type, n_in, n_tokens)) return false;
  thread_local GemmInput in;
  in.prepare(w_type, act, n_in, n_tokens);
  return gemm_rows(w_type, w, n_in, n_out, in, y, row_begin, row_end);
}

}  // namespace endless::kernels
