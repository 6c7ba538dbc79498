// Engine::matmul: a weight matrix times a batch of activations, rows split across the threads.
// The activations are converted once into the weights' vec_dot_type and laid out once for the
// tiles (kernels::GemmInput); each thread then computes output rows (whole register tiles,
// kernels::kGemmRowAlign), in chunks (in prefill one row block of the tiles, in decode about
// 64 KiB of weights): its own part first, then what is left of the others'
// (ThreadPool::parallel_for_balanced). The tiled kernels where there are some
// (kernels::gemm_rows), else one dot product per output (kernels::matmul_rows): both give the
// same bits.
#include <algorithm>
#include <span>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "model/forward.h"

namespace endless {

void Engine::matmul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  const Product one{&w, y};
  matmul_group(std::span(&one, 1), x, n_tokens);
}

void Engine::matmul_group(std::span<const Product> products, const float* x, int64_t n_tokens) {
  const Weight& w = *products[0].w;
  // Products that cannot share the first one's converted activations run alone.
  size_t shared = 1;
  while (shared < products.size() && products[shared].w->type == w.type && products[shared].w->n_in == w.n_in) ++shared;
  for (size_t i = shared; i < products.size(); ++i) matmul_group(products.subspan(i, 1), x, n_tokens);
  products = products.first(shared);

  const size_t bytes = kernels::activations_size(w.type, w.n_in, n_tokens);
  if (act_.size() < bytes) act_.resize(bytes);
  const size_t act_row = kernels::activations_size(w.type, w.n_in, 1);
  for_rows(n_tokens, [&](int64_t b, int64_t e) {
    kernels::convert_activations(w.type, x + b * w.n_in, w.n_in, e - b, act_.data() + b * act_row);
  });
  // Products all of which are multiplied by block need no token pairs (serial work: 0.4-0.7% of
  // an eight-session step when they were made anyway).
  bool by_block_only = true;
  for (const Product& p : products) by_block_only = by_block_only && kernels::by_block(p.w->type, p.w->n_out);
  gemm_in_.prepare(w.type, act_.data(), w.n_in, n_tokens, by_block_only);
  // Rows [begin, end) of the products' rows one after the other: split where a product ends.
  int64_t n_rows = 0;
  for (const Product& p : products) n_rows += p.w->n_out;
  auto rows = [&](int64_t begin, int64_t end) {
    int64_t first = 0;
    for (const Product& p : products) {
      const int64_t n_out = p.w->n_out;
      const int64_t b = std::max<int64_t>(begin - first, 0), e = std::min<int64_t>(end - first, n_out);
      if (b < e && !kernels::gemm_rows(w.type, p.w->data, w.n_in, n_out, gemm_in_, p.y, b, e, p.w->packed))
        kernels::matmul_rows(w.type, p.w->data, w.n_in, n_out, act_.data(), n_tokens, p.y, b, e);
      first += n_out;
    }
  };
  const int64_t row_bytes = static_cast<int64_t>(row_size(w.type, w.n_in));
  if (n_tokens > kernels::kGemmOnePassTokens) {
    // Prefill: chunks of one row block of the tiles (all the tokens pass over a block while it
    // sits in cache), each thread taking its own part first, then what is left of the others'.
    const int64_t block = std::max<int64_t>(kernels::kGemmRowAlign,
                                            static_cast<int64_t>(kernels::kGemmRowBlockBytes) / std::max<int64_t>(row_bytes, 1));
    pool_.parallel_for_balanced(n_rows, kernels::kGemmRowAlign, block, rows);
    return;
  }
  // Decode, or a few tokens (sessions batched together) that one tile covers: every row is read
  // once, in chunks of about 64 KiB of weights, at least one register tile: small enough that a
  // thread delayed by the machine leaves little for the others to wait for, large enough that
  // handing them out costs nothing measurable.
  const int64_t grain = std::max<int64_t>(kernels::kGemmRowAlign, (int64_t{64} << 10) / std::max<int64_t>(row_bytes, 1));
  pool_.parallel_for_balanced(n_rows, kernels::kGemmRowAlign, grain, rows);
}

}  // namespace endless
