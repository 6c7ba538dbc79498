// The machine's arithmetic peak, as `endless bench --peak` measures it: chains of independent
// multiply-adds in registers, no memory traffic, on every thread at once. Prefill is bound by
// arithmetic as decode is by memory, so its speed is set against this, as decode's is against
// the bandwidth probe.
#pragma once

#include <string>
#include <vector>

namespace endless::cli {

// One test of a machine probe (this one, or the bandwidth probe): its best and mean rate.
struct ProbeResult {
  std::string test;  // e.g. "f32 fma (AVX-512)"
  double best = 0;   // here 1e9 operations/s (a multiply-add counts two), best run
  double mean = 0;
};

// The multiply-add instructions this CPU has, each measured on `threads` threads at once: f32
// FMA (AVX-512 or AVX2), bf16 dot (VDPBF16PS) and int8 dot (VPDPBUSD) where present.
std::vector<ProbeResult> probe_peak(int threads, int runs);

}  // namespace endless::cli
