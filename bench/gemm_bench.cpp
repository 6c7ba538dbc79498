// Microbenchmark of the matrix products of the 254M comparison model (docs/benchmarks.md): for
// each weight type, matmul_rows (one dot product per output) against gemm_rows (register tiles),
// one thread, for one token (decode) and a batch (prefill). Times are the thread's CPU time, so a
// busy machine slows the numbers less than wall-clock time would. Not part of the CMake build;
// after building kernels_tests in build-perf:
//   g++ -O2 -std=c++20 -I src bench/gemm_bench.cpp build-perf/libendless_kernels.a \
//       build-perf/libendless_gguf.a build-perf/libendless_util.a -o /tmp/gemm_bench
//   /tmp/gemm_bench [n_in n_out n_tokens]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/kernels.h"

using namespace endless;
using namespace endless::kernels;

namespace {

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// Best of five timings of enough repetitions to take 0.1 s of CPU time.
template <typename F>
double seconds_per_call(F&& fn) {
  fn();
  int64_t reps = 1;
  for (;;) {
    const double t0 = cpu_seconds();
    for (int64_t i = 0; i < reps; ++i) fn();
    if (cpu_seconds() - t0 >= 0.1) break;
    reps *= 2;
  }
  double best = 1e30;
  for (int k = 0; k < 5; ++k) {
    const double t0 = cpu_seconds();
    for (int64_t i = 0; i < reps; ++i) fn();
    best = std::min(best, (cpu_seconds() - t0) / reps);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n_in = argc > 1 ? std::atoll(argv[1]) : 1024;
  const int64_t n_out = argc > 2 ? std::atoll(argv[2]) : 2816;
  const int64_t n_tokens = argc > 3 ? std::atoll(argv[3]) : 128;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> wf(n_in * n_out), x(n_in * n_tokens);
  for (auto& v : wf) v = dist(rng);
  for (auto& v : x) v = dist(rng);
  std::printf("W %lld x %lld, prefill %lld tokens, isa %s, one thread, CPU time\n", (long long)n_out,
              (long long)n_in, (long long)n_tokens, std::string(isa_name(active_isa())).c_str());
  std::printf("%-5s | %-28s | %-28s\n", "", "decode: us, weight GB/s", "prefill: us/token, GMAC/s");
  std::printf("%-5s | %13s %14s | %13s %14s\n", "type", "matmul_rows", "gemm_rows", "matmul_rows", "gemm_rows");
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                       TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K}) {
    std::vector<uint8_t> w(row_size(t, n_in) * n_out);
    for (int64_t o = 0; o < n_out; ++o)
      quantize_weights_row(t, wf.data() + o * n_in, w.data() + o * row_size(t, n_in), n_in);
    std::vector<uint8_t> act(activations_size(t, n_in, n_tokens));
    convert_activations(t, x.data(), n_in, n_tokens, act.data());
    std::vector<float> y(n_out * n_tokens);
    double r[4] = {0, 0, 0, 0};
    int k = 0;
    for (int64_t nt : {int64_t{1}, n_tokens}) {
      r[k++] = seconds_per_call([&] { matmul_rows(t, w.data(), n_in, n_out, act.data(), nt, y.data(), 0, n_out); });
      r[k++] = has_gemm(t, n_in, nt) ? seconds_per_call([&] {
        gemm_rows(t, w.data(), n_in, n_out, act.data(), nt, y.data(), 0, n_out);
      }) : 0.0;
    }
    auto cell = [&](double s, bool decode) {
      if (s == 0) return std::string("      -       ");
      char buf[40];
      if (decode) std::snprintf(buf, sizeof buf, "%6.0f %6.1f", s * 1e6, w.size() / s / 1e9);
      else std::snprintf(buf, sizeof buf, "%6.1f %6.1f", s * 1e6 / n_tokens, n_in * n_out * double(n_tokens) / s / 1e9);
      return std::string(buf);
    };
    std::printf("%-5s | %13s %14s | %13s %14s\n", std::string(type_name(t)).c_str(), cell(r[0], true).c_str(),
                cell(r[1], true).c_str(), cell(r[2], false).c_str(), cell(r[3], false).c_str());
  }
}
