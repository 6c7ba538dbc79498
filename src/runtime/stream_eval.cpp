#include "runtime/stream_eval.h"

#include <chrono>
#include <cmath>
#include <ctime>

#include "runtime/perplexity.h"
#include "util/error.h"

namespace endless {

double StreamSegment::ppl() const { return count ? std::exp(nll / count) : 0; }
double StreamEvalResult::ppl() const { return scored ? std::exp(nll / scored) : 0; }

namespace {

double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Adds the NLL of the token at stream position `pos` (predicted from what came before).
void score(StreamEvalResult& r, int64_t segment, int64_t pos, double nll) {
  const size_t index = static_cast<size_t>((pos - 1) / segment);
  if (r.segments.size() <= index) {
    r.segments.resize(index + 1);
    r.segments[index].begin = pos;
  }
  StreamSegment& s = r.segments[index];
  s.end = pos + 1;
  s.nll += nll;
  s.count += 1;
  r.nll += nll;
  r.scored += 1;
}

}  // namespace

StreamEvalResult stream_perplexity(Engine& engine, std::span<const int32_t> tokens,
                                   const StreamEvalOptions& o, const StreamProgress& progress) {
  return stream_perplexity(
      engine, [&](int64_t p) { return tokens[p]; }, static_cast<int64_t>(tokens.size()), o, progress);
}

StreamEvalResult stream_perplexity(Engine& engine, const TokenAt& token_at, int64_t stream_len,
                                   const StreamEvalOptions& o, const StreamProgress& progress) {
  using clock = std::chrono::steady_clock;
  if (o.segment < 1) fail("segment size must be positive");
  const auto start = clock::now();
  const int64_t total = o.max_tokens > 0 ? std::min(o.max_tokens, stream_len) : stream_len;
  std::vector<int32_t> window;  // the tokens of the current batch (or recompute window)
  const int64_t V = engine.config().n_vocab;
  StreamEvalResult r;

  if (o.recompute) {
    const int64_t W = o.recompute_window;
    if (W < 2) fail("recompute window must be at least 2");
    r.policy = cat("recompute ", W);
    MemoryConfig mem;
    mem.policy = "full";
    mem.n_ctx = W;
    mem.max_batch = static_cast<int>(W);
    mem.kv_type = o.memory.kv_type;
    auto seq = engine.new_sequence(mem);
    r.cache_bytes = seq->store.bytes();
    for (int64_t i = 0; i + 1 < total; ++i) {
      // The last W tokens up to and including i, encoded from an empty cache.
      const auto t0 = clock::now();
      const double c0 = cpu_now();
      const int64_t first = std::max<int64_t>(0, i - W + 1);
      window.clear();
      for (int64_t p = first; p <= i; ++p) window.push_back(token_at(p));
      seq = engine.new_sequence(mem);
      const auto& logits = engine.eval(*seq, window, false);
      score(r, o.segment, i + 1, token_nll(std::span(logits.data(), V), token_at(i + 1)));
      r.segments.back().seconds += std::chrono::duration<double>(clock::now() - t0).count();
      r.segments.back().cpu_seconds += cpu_now() - c0;
      if (progress && (i % 16 == 0 || i + 2 == total)) progress(i + 2, total);
    }
  } else {
    auto seq = engine.new_sequence(o.memory);
    r.policy = seq->policy->describe();
    r.cache_bytes = seq->store.bytes();
    const int64_t step = std::max(1, seq->config.max_batch);  // the policy may allow fewer
    std::vector<float> nll;
    for (int64_t b = 0; b < total; b += step) {
      const int64_t n = std::min(step, total - b);
      const auto t0 = clock::now();
      const double c0 = cpu_now();
      window.clear();
      for (int64_t p = b; p < b + n; ++p) window.push_back(token_at(p));
      const std::vector<float>* logits_ptr = nullptr;
      try {
        logits_ptr = &engine.eval(*seq, window, /*all_logits=*/true);
      } catch (const Error& e) {
        // A policy that cannot evict (full) ends the stream here; report what was measured.
        r.stopped = cat("stopped after ", b, " tokens: ", e.what());
        break;
      }
      const std::vector<float>& logits = *logits_ptr;
      nll.clear();
      for (int64_t j = 0; j < n && b + j + 1 < total; ++j) {
        const double v = token_nll(std::span(logits.data() + j * V, V), token_at(b + j + 1));
        score(r, o.segment, b + j + 1, v);
        nll.push_back(static_cast<float>(v));
      }
      // Policies that keep tokens by their self-information (sirllm) get every token's NLL.
      if (!nll.empty() && seq->policy->wants_nll())
        seq->policy->observe_nll(b + 1, nll.data(), static_cast<int>(nll.size()));
      if (!r.segments.empty()) {
        r.segments.back().seconds += std::chrono::duration<double>(clock::now() - t0).count();
        r.segments.back().cpu_seconds += cpu_now() - c0;
      }
      if (progress) progress(b + n, total);
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace endless
