#include "peak_probe.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "kernels/kernels.h"
#include "util/thread_pool.h"

// GCC 12's own intrinsics headers warn about their undefined-upper-half idiom.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace endless::cli {
namespace {

// Twelve independent accumulators: more chains than the multiply-add units times their latency
// (2 x 4 on current cores), so the units, not the chains, set the pace. The empty asm keeps each
// accumulator in its register and every step in the loop.
#define ENDLESS_PEAK_LOOP(V, STEP)                                                                 \
  V a0 = init, a1 = init, a2 = init, a3 = init, a4 = init, a5 = init, a6 = init, a7 = init,       \
    a8 = init, a9 = init, a10 = init, a11 = init;                                                 \
  for (int64_t i = 0; i < iters; ++i) {                                                           \
    a0 = STEP(a0); a1 = STEP(a1); a2 = STEP(a2); a3 = STEP(a3); a4 = STEP(a4); a5 = STEP(a5);     \
    a6 = STEP(a6); a7 = STEP(a7); a8 = STEP(a8); a9 = STEP(a9); a10 = STEP(a10); a11 = STEP(a11); \
    asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));                 \
    asm volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));               \
  }

// The twelve accumulators added up with ADD (their sum only has to depend on every step).
#define ENDLESS_PEAK_SUM(ADD) \
  ADD(ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7))), ADD(ADD(a8, a9), ADD(a10, a11)))

constexpr int kChains = 12;

// Each returns a value that depends on every step, so nothing is left out.
__attribute__((target("avx512f"))) float f32_avx512(int64_t iters) {
  const __m512 init = _mm512_set1_ps(1.0f), m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
#define STEP(a) _mm512_fmadd_ps(a, m, c)
  ENDLESS_PEAK_LOOP(__m512, STEP)
#undef STEP
  return _mm512_reduce_add_ps(ENDLESS_PEAK_SUM(_mm512_add_ps));
}

__attribute__((target("avx2,fma"))) float f32_avx2(int64_t iters) {
  const __m256 init = _mm256_set1_ps(1.0f), m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
#define STEP(a) _mm256_fmadd_ps(a, m, c)
  ENDLESS_PEAK_LOOP(__m256, STEP)
#undef STEP
  const __m256 s = ENDLESS_PEAK_SUM(_mm256_add_ps);
  alignas(32) float f[8];
  _mm256_store_ps(f, s);
  return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}

__attribute__((target("avx512f,avx512bf16"))) float bf16_avx512(int64_t iters) {
  const __m512 init = _mm512_set1_ps(1.0f);
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  const __m512bh y = (__m512bh)_mm512_set1_epi16(0x3380);  // bf16 2^-24: sums grow slowly
#define STEP(a) _mm512_dpbf16_ps(a, x, y)
  ENDLESS_PEAK_LOOP(__m512, STEP)
#undef STEP
  return _mm512_reduce_add_ps(ENDLESS_PEAK_SUM(_mm512_add_ps));
}

__attribute__((target("avx512f,avx512vnni"))) float int8_avx512(int64_t iters) {
  const __m512i init = _mm512_setzero_si512(), u = _mm512_set1_epi8(1), s8 = _mm512_set1_epi8(1);
#define STEP(a) _mm512_dpbusd_epi32(a, u, s8)
  ENDLESS_PEAK_LOOP(__m512i, STEP)
#undef STEP
  return static_cast<float>(_mm512_reduce_add_epi32(ENDLESS_PEAK_SUM(_mm512_add_epi32)));
}

#undef ENDLESS_PEAK_SUM
#undef ENDLESS_PEAK_LOOP

struct Probe {
  const char* name;
  float (*fn)(int64_t);
  double ops_per_step;  // per instruction: lanes x products x 2
};

volatile float g_peak_sink;

}  // namespace

std::vector<ProbeResult> probe_peak(int threads, int runs) {
  std::vector<Probe> probes;
  const bool zmm = kernels::best_isa() == kernels::Isa::avx512;
  if (zmm) probes.push_back({"f32 fma (AVX-512)", f32_avx512, 16 * 2});
  else if (kernels::best_isa() == kernels::Isa::avx2) probes.push_back({"f32 fma (AVX2)", f32_avx2, 8 * 2});
  if (zmm && __builtin_cpu_supports("avx512bf16")) probes.push_back({"bf16 dot (VDPBF16PS)", bf16_avx512, 32 * 2});
  if (zmm && __builtin_cpu_supports("avx512vnni")) probes.push_back({"int8 dot (VPDPBUSD)", int8_avx512, 64 * 2});

  ThreadPool pool(threads);
  std::vector<ProbeResult> out;
  for (const Probe& p : probes) {
    // Iterations for about 0.1 s on one thread, from a short timed run.
    int64_t iters = 1 << 16;
    for (;;) {
      const auto t0 = std::chrono::steady_clock::now();
      g_peak_sink = p.fn(iters);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (s > 0.02 || iters > (int64_t{1} << 40)) {
        iters = std::max<int64_t>(1, static_cast<int64_t>(iters * (0.1 / std::max(s, 1e-9))));
        break;
      }
      iters *= 4;
    }
    ProbeResult r{p.name, 0, 0};
    const double ops = p.ops_per_step * kChains * static_cast<double>(iters) * threads;
    for (int k = 0; k < runs; ++k) {
      std::atomic<float> sum{0};
      const auto t0 = std::chrono::steady_clock::now();
      pool.run([&](int) {
        const float v = p.fn(iters);
        float cur = sum.load();
        while (!sum.compare_exchange_weak(cur, cur + v)) {}
      });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      g_peak_sink = sum.load();
      const double gops = ops / s / 1e9;
      r.best = std::max(r.best, gops);
      r.mean += gops / runs;
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace endless::cli
