#include "memory/sink.h"

#include <algorithm>

#include "util/error.h"

namespace endless {

SinkPolicy::SinkPolicy(int n_sink, int64_t window, int max_batch)
    : n_sink_(n_sink), local_(window - n_sink), max_batch_(max_batch) {
  if (n_sink < 0) fail("sink cache: the number of sink tokens must not be negative");
  if (local_ < 1)
    fail("sink cache: the window (", window, ") must be larger than the sink count (", n_sink, ")");
  if (max_batch < 1) fail("sink cache: batch size must be positive");
  region_first_ = n_sink;
}

std::string SinkPolicy::describe() const {
  return n_sink_ == 0 ? cat("window ", local_) : cat("sink ", n_sink_, "+", local_);
}

int64_t SinkPolicy::retained() const {
  const int64_t sinks = std::min<int64_t>(n_seen_, n_sink_);
  const int64_t recent = std::max<int64_t>(0, n_seen_ - n_sink_);
  return sinks + std::min(recent, local_);
}

void SinkPolicy::begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) {
  if (n > max_batch_) fail("sink cache: batch of ", n, " exceeds the maximum of ", max_batch_);
  const int64_t new_local = std::max<int64_t>(0, n_seen_ + n - std::max<int64_t>(n_seen_, n_sink_));
  if (region_used_ + new_local > local_ + max_batch_) {
    // Keep only the most recent local_ tokens: everything older is outside every future window.
    const int64_t keep = std::min(region_used_, local_);
    const int64_t drop = region_used_ - keep;
    store.move(n_sink_ + drop, n_sink_, keep);
    region_first_ += drop;
    region_used_ = keep;
  }
  for (int i = 0; i < n; ++i) {
    const int64_t t = n_seen_ + i;
    key_pos[i] = static_cast<double>(t);
    if (t < n_sink_) {
      slots[i] = t;
    } else {
      slots[i] = local_slot(t);
      ++region_used_;
    }
  }
}

void SinkPolicy::spans(int, int i, std::vector<Span>& out) const {
  const int64_t t = n_seen_ + i;
  out.clear();
  if (t < n_sink_) {
    out.push_back({0, t + 1, static_cast<double>(t)});
    return;
  }
  const int64_t start = std::max<int64_t>(n_sink_, t - local_ + 1);
  // In the cache the query sits right after the sinks and the window before it; the window keys
  // were rotated at their stream positions, so rotating the query at t keeps their distances.
  const double query_in_cache = static_cast<double>(n_sink_ + (t - start));
  if (n_sink_ > 0) out.push_back({0, n_sink_, query_in_cache});
  out.push_back({local_slot(start), local_slot(t) + 1, static_cast<double>(t)});
}

std::vector<int64_t> SinkPolicy::save_state() const { return {n_seen_, region_first_, region_used_}; }

void SinkPolicy::load_state(const std::vector<int64_t>& s) {
  if (s.size() != 3) fail("snapshot: bad state for cache policy ", describe());
  n_seen_ = s[0];
  region_first_ = s[1];
  region_used_ = s[2];
  if (region_used_ > local_ + max_batch_ || region_first_ < n_sink_ || n_seen_ < 0) fail("snapshot: inconsistent state for cache policy ", describe());
}

}  // namespace endless
