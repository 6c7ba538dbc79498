// Microbenchmark of the kernels: vec_dot per weight type and instruction set, and matmul for one
// token (decode) and many (prefill). Not part of the CMake build; after building kernels_tests:
//   g++ -O2 -std=c++20 -I src bench/kernels_bench.cpp build-kernels/libendless_kernels.a \
//       build-kernels/libendless_gguf.a build-kernels/libendless_util.a -o /tmp/kernels_bench
//   /tmp/kernels_bench [n_in n_out n_tokens]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/kernels.h"

using namespace endless;
using namespace endless::kernels;

namespace {

double seconds_per_call(auto&& fn, double min_seconds = 0.2) {
  using clock = std::chrono::steady_clock;
  fn();
  int64_t reps = 1;
  for (;;) {
    const auto t0 = clock::now();
    for (int64_t i = 0; i < reps; ++i) fn();
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    if (s >= min_seconds) return s / reps;
    reps *= 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n_in = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int64_t n_out = argc > 2 ? std::atoll(argv[2]) : 1024;
  const int64_t n_tokens = argc > 3 ? std::atoll(argv[3]) : 32;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> wf(n_in * n_out), x(n_in * n_tokens);
  for (auto& v : wf) v = dist(rng);
  for (auto& v : x) v = dist(rng);
  std::printf("matrix %lld x %lld, prefill %lld tokens; best isa %s\n", (long long)n_out,
              (long long)n_in, (long long)n_tokens, std::string(isa_name(best_isa())).c_str());
  std::printf("%-6s %-7s %12s %14s %16s\n", "type", "isa", "decode ms", "weights GB/s",
              "prefill ms/token");
  const TensorType types[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
                              TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                              TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                              TensorType::Q6_K};
  for (TensorType t : types) {
    std::vector<uint8_t> w(row_size(t, n_in) * n_out);
    for (int64_t o = 0; o < n_out; ++o)
      quantize_row(t, wf.data() + o * n_in, w.data() + o * row_size(t, n_in), n_in);
    std::vector<float> y(n_out * n_tokens);
    for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
      if (isa == Isa::avx512 && best_isa() != Isa::avx512) continue;
      if (isa == Isa::avx2 && best_isa() == Isa::scalar) continue;
      set_isa(isa);
      const double decode = seconds_per_call([&] { matmul(t, w.data(), n_in, n_out, x.data(), 1, y.data()); });
      const double prefill =
          isa == Isa::scalar ? 0.0
                             : seconds_per_call([&] { matmul(t, w.data(), n_in, n_out, x.data(), n_tokens, y.data()); });
      std::printf("%-6s %-7s %12.3f %14.2f %16.3f\n", std::string(type_name(t)).c_str(),
                  std::string(isa_name(isa)).c_str(), decode * 1e3, w.size() / decode / 1e9,
                  prefill * 1e3 / n_tokens);
    }
  }
}
