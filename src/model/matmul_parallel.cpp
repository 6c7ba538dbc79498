// Engine::matmul: a weight matrix times a batch of activations, rows split across the threads.
// The activations are converted once into the weights' vec_dot_type; each thread then computes a
// contiguous range of output rows (whole register tiles, kernels::kGemmRowAlign) with the tiled
// kernels where there are some (kernels::gemm_rows), else one dot product per output
// (kernels::matmul_rows). Both give the same bits.
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "model/forward.h"

namespace endless {

void Engine::matmul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const size_t bytes = kernels::activations_size(w.type, w.n_in, n_tokens);
  if (act_.size() < bytes) act_.resize(bytes);
  kernels::convert_activations(w.type, x, w.n_in, n_tokens, act_.data());
  pool_.parallel_for_aligned(w.n_out, kernels::kGemmRowAlign, [&](int64_t begin, int64_t end) {
    if (!kernels::gemm_rows(w.type, w.data, w.n_in, w.n_out, act_.data(), n_tokens, y, begin, end))
      kernels::matmul_rows(w.type, w.data, w.n_in, w.n_out, act_.data(), n_tokens, y, begin, end);
  });
}

}  // namespace endless
