// AVX-512 (F, BW, VL, DQ, VNNI, BF16) fast paths; see dot_avx2.cpp for how they are compiled.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/internal.h"
#include "kernels/kernels.h"
#include "util/fp16.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16")

namespace endless::kernels::detail {

VecDotFn avx512_vec_dot_fn(TensorType w) {
  switch (w) {
    default: return nullptr;
  }
}

}  // namespace endless::kernels::detail

#pragma GCC pop_options
