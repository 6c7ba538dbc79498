// `full`: dense attention over every token up to n_ctx; past it, an error (never silent
// truncation). Memory bound: n_ctx slots.
#include "memory/full.h"

#include "util/error.h"

namespace endless {

FullPolicy::FullPolicy(int64_t n_ctx) : n_ctx_(n_ctx) {
  if (n_ctx <= 0) fail("full cache: context size must be positive, got ", n_ctx);
}

std::string FullPolicy::describe() const { return cat("full ", n_ctx_); }

void FullPolicy::begin_batch(int n, KVStore&, int64_t* slots, double* key_pos) {
  if (n_seen_ + n > n_ctx_)
    fail("context full: ", n_seen_ + n, " tokens do not fit in the ", n_ctx_,
         "-token context (raise -c, or stream with a bounded cache such as --cache sink)");
  for (int i = 0; i < n; ++i) {
    slots[i] = n_seen_ + i;
    key_pos[i] = static_cast<double>(n_seen_ + i);
  }
}

void FullPolicy::spans(int, int i, std::vector<Span>& out) const {
  const int64_t t = n_seen_ + i;
  out.assign(1, Span{0, t + 1, static_cast<double>(t)});
}

std::vector<int64_t> FullPolicy::save_state() const { return {n_seen_}; }

void FullPolicy::load_state(const std::vector<int64_t>& s) {
  if (s.size() != 1) fail("snapshot: bad state for cache policy ", describe());
  n_seen_ = s[0];
  if (n_seen_ > n_ctx_ || n_seen_ < 0) fail("snapshot: inconsistent state for cache policy ", describe());
}

}  // namespace endless
