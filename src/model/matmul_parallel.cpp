// Engine::matmul: a weight matrix times a batch of activations, rows split across the threads.
// The activations are converted once into the weights' vec_dot_type and laid out once for the
// tiles (kernels::GemmInput); each thread then computes output rows (whole register tiles,
// kernels::kGemmRowAlign), in chunks (in prefill one row block of the tiles, in decode about
// 64 KiB of weights): its own part first, then what is left of the others'
// (ThreadPool::parallel_for_balanced). The tiled kernels where there are some
// (kernels::gemm_rows), else one dot product per output (kernels::matmul_rows): both give the
// same bits.
#include <algorithm>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "model/forward.h"

namespace endless {

void Engine::matmul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const size_t bytes = kernels::activations_size(w.type, w.n_in, n_tokens);
  if (act_.size() < bytes) act_.resize(bytes);
  kernels::convert_activations(w.type, x, w.n_in, n_tokens, act_.data());
  gemm_in_.prepare(w.type, act_.data(), w.n_in, n_tokens);
  auto rows = [&](int64_t begin, int64_t end) {
    if (!kernels::gemm_rows(w.type, w.data, w.n_in, w.n_out, gemm_in_, y, begin, end))
      kernels::matmul_rows(w.type, w.data, w.n_in, w.n_out, act_.data(), n_tokens, y, begin, end);
  };
  const int64_t row_bytes = static_cast<int64_t>(row_size(w.type, w.n_in));
  if (n_tokens > kernels::kGemmOnePassTokens) {
    // Prefill: chunks of one row block of the tiles (all the tokens pass over a block while it
    // sits in cache), each thread taking its own part first, then what is left of the others'.
    const int64_t block = std::max<int64_t>(kernels::kGemmRowAlign,
                                            static_cast<int64_t>(kernels::kGemmRowBlockBytes) / std::max<int64_t>(row_bytes, 1));
    pool_.parallel_for_balanced(w.n_out, kernels::kGemmRowAlign, block, rows);
    return;
  }
  // Decode, or a few tokens (sessions batched together) that one tile covers: every row is read
  // once, in chunks of about 64 KiB of weights, at least one register tile: small enough that a
  // thread delayed by the machine leaves little for the others to wait for, large enough that
  // handing them out costs nothing measurable.
  const int64_t grain = std::max<int64_t>(kernels::kGemmRowAlign, (int64_t{64} << 10) / std::max<int64_t>(row_bytes, 1));
  pool_.parallel_for_balanced(w.n_out, kernels::kGemmRowAlign, grain, rows);
}

}  // namespace endless
