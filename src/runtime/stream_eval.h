// Streaming perplexity: a whole token stream is fed as one sequence through a cache policy and
// every token is scored (PPL = exp(mean NLL)), as StreamingLLM evaluates. The `recompute` baseline
// re-encodes the last W tokens from scratch for every token instead (the quality oracle, O(W^2)
// per token).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/forward.h"

namespace endless {

struct StreamEvalOptions {
  MemoryConfig memory;         // the cache policy (ignored by recompute)
  bool recompute = false;      // sliding window with re-computation
  int64_t recompute_window = 512;
  int64_t segment = 1000;      // tokens per reported segment
  int64_t max_tokens = 0;      // stop after this many tokens (0: the whole stream)
};

struct StreamSegment {
  int64_t begin = 0, end = 0;  // stream positions of the scored tokens [begin, end)
  double nll = 0;              // sum of NLL
  int64_t count = 0;
  double seconds = 0;          // wall time spent on this segment's tokens
  double cpu_seconds = 0;      // process CPU time: unlike wall time, not inflated by other load
  double ppl() const;
};

struct StreamEvalResult {
  std::string policy;               // description, e.g. "sink 4+508"
  std::vector<StreamSegment> segments;
  double nll = 0;
  int64_t scored = 0;
  double seconds = 0;
  std::string stopped;              // why it stopped early, if it did (e.g. a full cache)
  size_t cache_bytes = 0;           // the KV store's size: the policy's memory bound
  double ppl() const;
};

// Progress: tokens done so far and the total planned.
using StreamProgress = std::function<void(int64_t done, int64_t total)>;

// The stream: token_at(p) for p in [0, total). A function rather than a vector so an endless
// stream (a file many times over) takes no memory that grows with its length.
using TokenAt = std::function<int32_t(int64_t)>;

StreamEvalResult stream_perplexity(Engine& engine, const TokenAt& token_at, int64_t total,
                                   const StreamEvalOptions& options,
                                   const StreamProgress& progress = {});

// Convenience for a stream held in memory.
StreamEvalResult stream_perplexity(Engine& engine, std::span<const int32_t> tokens,
                                   const StreamEvalOptions& options,
                                   const StreamProgress& progress = {});

}  // namespace endless
