// Perplexity the way llama-perplexity measures it: the token stream is cut into chunks of n_ctx
// tokens, each evaluated independently from an empty cache with its first token replaced by BOS,
// and only the second half of each chunk is scored.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/forward.h"

namespace endless {

struct PerplexityResult {
  double ppl = 0;
  double ppl_error = 0;     // standard error, as llama-perplexity reports it
  int64_t n_scored = 0;
  int n_chunks = 0;
  std::vector<double> running_ppl;  // after each chunk
};

// -log softmax(logits)[token], computed as llama.cpp does (double-precision sum).
double token_nll(std::span<const float> logits, int32_t token);

// tokens: the whole text, BOS first if the model adds one; bos < 0 when the model has none.
// n_chunks <= 0 means as many as fit. on_chunk (optional) is called after each chunk.
PerplexityResult chunked_perplexity(Engine& engine, std::span<const int32_t> tokens, int n_ctx,
                                    int n_chunks, int32_t bos, int max_batch,
                                    const std::function<void(int, double)>& on_chunk = {});

}  // namespace endless
