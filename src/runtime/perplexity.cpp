#include "runtime/perplexity.h"

#include <cmath>

#include "util/error.h"

namespace endless {

double token_nll(std::span<const float> logits, int32_t token) {
  float mx = logits[0];
  for (float l : logits) mx = std::max(mx, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(l - mx);
  return -(static_cast<double>(logits[token]) - mx - std::log(sum));
}

PerplexityResult chunked_perplexity(Engine& engine, std::span<const int32_t> tokens, int n_ctx,
                                    int n_chunks, int32_t bos, int max_batch,
                                    const std::function<void(int, double)>& on_chunk) {
  if (n_ctx < 4) fail("perplexity: context size must be at least 4, got ", n_ctx);
  const int64_t available = static_cast<int64_t>(tokens.size()) / n_ctx;
  if (available < 1)
    fail("perplexity: the text has ", tokens.size(), " tokens, fewer than one chunk of ", n_ctx);
  const int chunks = n_chunks > 0 ? static_cast<int>(std::min<int64_t>(n_chunks, available))
                                  : static_cast<int>(available);
  const int64_t n_vocab = engine.config().n_vocab;
  const int first = n_ctx / 2;

  MemoryConfig mem;
  mem.policy = "full";
  mem.n_ctx = n_ctx;
  mem.max_batch = max_batch;
  PerplexityResult r;
  double nll = 0, nll2 = 0;
  std::vector<int32_t> chunk(n_ctx);
  for (int c = 0; c < chunks; ++c) {
    std::copy(tokens.begin() + static_cast<int64_t>(c) * n_ctx,
              tokens.begin() + static_cast<int64_t>(c + 1) * n_ctx, chunk.begin());
    if (bos >= 0) chunk[0] = bos;
    auto seq = engine.new_sequence(mem);
    const auto& logits = engine.eval(*seq, chunk, /*all_logits=*/true);
    for (int j = first; j < n_ctx - 1; ++j) {
      const double v = token_nll(std::span(logits.data() + j * n_vocab, n_vocab), chunk[j + 1]);
      nll += v;
      nll2 += v * v;
      ++r.n_scored;
    }
    r.running_ppl.push_back(std::exp(nll / r.n_scored));
    if (on_chunk) on_chunk(c, r.running_ppl.back());
  }
  r.n_chunks = chunks;
  const double mean = nll / r.n_scored;
  r.ppl = std::exp(mean);
  double var = nll2 / r.n_scored - mean * mean;
  r.ppl_error = var > 0 && r.n_scored > 1 ? std::sqrt(var / (r.n_scored - 1)) * r.ppl : 0;
  return r;
}

}  // namespace endless
