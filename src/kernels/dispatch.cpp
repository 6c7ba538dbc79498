// Run-time choice of the instruction set and the vec_dot entry points.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/error.h"

namespace endless::kernels {

namespace detail {

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
  return has;
}

bool cpu_has_avx512() {
  static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
}

// CPUID.7.0:EDX bit 24 (AMX-TILE) and 25 (AMX-INT8); the OS must enable the tile state in XCR0
// (bits 17, 18) and, on Linux, grant it to the process (ARCH_REQ_XCOMP_PERM for XTILEDATA), as
// the tile data is too large for the signal frame of a process that did not ask.
bool cpu_has_amx_int8() {
  static const bool has = [] {
    if (const char* env = std::getenv("ENDLESS_AMX"); env && std::string(env) == "0") return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false;
#ifdef __linux__
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
#endif
    return true;
  }();
  return has;
}

namespace {
std::atomic<int> g_bf16_by_fma{-1};  // -1 until first use
std::atomic<int> g_amx_arithmetic{-1};
}  // namespace

bool amx_arithmetic() {
  int v = g_amx_arithmetic.load(std::memory_order_relaxed);
  if (v < 0) {
    v = cpu_has_amx_int8() ? 1 : 0;
    g_amx_arithmetic.store(v, std::memory_order_relaxed);
  }
  return v != 0;
}

void set_amx_arithmetic(bool on) { g_amx_arithmetic.store(on ? 1 : 0, std::memory_order_relaxed); }

bool bf16_by_fma() {
  int v = g_bf16_by_fma.load(std::memory_order_relaxed);
  if (v < 0) {
    if (const char* env = std::getenv("ENDLESS_BF16_FMA"); env && *env)
      v = std::string(env) != "0";
    else
      v = __builtin_cpu_is("intel") ? 1 : 0;
    g_bf16_by_fma.store(v, std::memory_order_relaxed);
  }
  return v != 0;
}

void set_bf16_by_fma(bool on) { g_bf16_by_fma.store(on ? 1 : 0, std::memory_order_relaxed); }

}  // namespace detail

namespace {

// -1 until first use; then the Isa in use.
std::atomic<int> g_isa{-1};

bool supported(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return detail::cpu_has_avx2();
    case Isa::avx512: return detail::cpu_has_avx512();
  }
  return false;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (name == isa_name(isa)) return isa;
  fail("unknown instruction set '", name, "' (expected scalar, avx2 or avx512)");
}

Isa best_isa() {
  if (detail::cpu_has_avx512()) return Isa::avx512;
  if (detail::cpu_has_avx2()) return Isa::avx2;
  return Isa::scalar;
}

Isa active_isa() {
  int isa = g_isa.load(std::memory_order_relaxed);
  if (isa >= 0) return static_cast<Isa>(isa);
  Isa chosen = best_isa();
  if (const char* env = std::getenv("ENDLESS_ISA"); env && *env) {
    const Isa wanted = parse_isa(env);
    if (!supported(wanted)) fail("ENDLESS_ISA=", env, ": this CPU does not support it");
    chosen = wanted;
  }
  g_isa.store(static_cast<int>(chosen), std::memory_order_relaxed);
  return chosen;
}

void set_isa(Isa isa) {
  if (!supported(isa)) fail("this CPU does not support the ", isa_name(isa), " kernels");
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

VecDotFn vec_dot_fn(TensorType w) {
  // Take the best implementation at or below the active level.
  const Isa isa = active_isa();
  if (isa == Isa::avx512)
    if (VecDotFn fn = detail::avx512_vec_dot_fn(w)) return fn;
  if (isa == Isa::avx512 || isa == Isa::avx2)
    if (VecDotFn fn = detail::avx2_vec_dot_fn(w)) return fn;
  return ref::vec_dot_fn(w);
}

namespace detail {

MultiDotTable multi_dot(TensorType w) {
  const Isa isa = active_isa();
  if (isa == Isa::avx512)
    if (MultiDotTable table = avx512_multi_dot(w)) return table;
  if (isa == Isa::avx512 || isa == Isa::avx2)
    if (MultiDotTable table = avx2_multi_dot(w)) return table;
  return {};
}

MultiDotTable multi_batch_dot(TensorType w) {
  if (active_isa() == Isa::avx512)
    if (MultiDotTable table = avx512_multi_gemm(w)) return table;
  return multi_dot(w);
}

}  // namespace detail

VecDotFn batch_dot_fn(TensorType w) {
  if (active_isa() == Isa::avx512)
    if (VecDotFn fn = detail::avx512_gemm_dot_fn(w)) return fn;
  return vec_dot_fn(w);
}

float vec_dot(TensorType w, int64_t n, const void* w_row, const void* act) {
  const VecDotFn fn = vec_dot_fn(w);
  if (!fn) fail("no dot product for weights of type ", type_name(w));
  return fn(n, w_row, act);
}

bool can_matmul(TensorType w) { return ref::vec_dot_fn(w) != nullptr; }

TensorType vec_dot_type(TensorType w) {
  switch (w) {
    case TensorType::F32: return TensorType::F32;
    case TensorType::F16: return TensorType::F16;
    case TensorType::BF16: return TensorType::BF16;
    case TensorType::Q4_0: case TensorType::Q5_0: case TensorType::Q8_0: return TensorType::Q8_0;
    case TensorType::Q4_1: case TensorType::Q5_1: return TensorType::Q8_1;
    case TensorType::Q2_K: case TensorType::Q3_K: case TensorType::Q4_K: case TensorType::Q5_K:
    case TensorType::Q6_K:
      return TensorType::Q8_K;
    default: fail("no dot product for weights of type ", type_name(w));
  }
}

}  // namespace endless::kernels
