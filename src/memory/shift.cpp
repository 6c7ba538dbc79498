#include "memory/shift.h"

#include <algorithm>

#include "util/error.h"

namespace endless {

ShiftPolicy::ShiftPolicy(int64_t n_ctx, int64_t n_keep, int max_batch)
    : n_ctx_(n_ctx), n_keep_(n_keep), max_batch_(max_batch) {
  if (n_ctx < 2) fail("shift cache: context size must be at least 2");
  if (n_keep < 0 || n_keep >= n_ctx) fail("shift cache: n_keep must be in [0, n_ctx)");
  if (max_batch > n_ctx - n_keep) max_batch_ = static_cast<int>(n_ctx - n_keep);
}

std::string ShiftPolicy::describe() const { return cat("shift ", n_ctx_, " keep ", n_keep_); }

void ShiftPolicy::begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) {
  if (n > max_batch_) fail("shift cache: batch of ", n, " exceeds the maximum of ", max_batch_);
  while (used_ + n > n_ctx_) {
    const int64_t n_discard = std::max<int64_t>(1, (used_ - n_keep_) / 2);
    store.move(n_keep_ + n_discard, n_keep_, used_ - n_keep_ - n_discard);
    used_ -= n_discard;
    discarded_ += n_discard;
  }
  for (int i = 0; i < n; ++i) {
    slots[i] = used_ + i;
    key_pos[i] = static_cast<double>(n_seen_ + i);
  }
}

void ShiftPolicy::spans(int, int i, std::vector<Span>& out) const {
  const int64_t slot = used_ + i;
  const int64_t t = n_seen_ + i;
  out.clear();
  // Kept tokens were stored at their stream positions, which equal their slots; the rest were
  // stored at stream positions `discarded_` above their slots.
  const int64_t keep = std::min(n_keep_, slot + 1);
  if (discarded_ == 0 || keep == 0) {
    out.push_back({0, slot + 1, static_cast<double>(t)});
    return;
  }
  out.push_back({0, keep, static_cast<double>(slot)});
  if (slot + 1 > keep) out.push_back({keep, slot + 1, static_cast<double>(t)});
}

void ShiftPolicy::end_batch(int n) {
  used_ += n;
  n_seen_ += n;
}

std::vector<int64_t> ShiftPolicy::save_state() const { return {n_seen_, used_, discarded_}; }

void ShiftPolicy::load_state(const std::vector<int64_t>& s) {
  if (s.size() != 3) fail("snapshot: bad state for cache policy ", describe());
  n_seen_ = s[0];
  used_ = s[1];
  discarded_ = s[2];
  if (used_ > n_ctx_ || n_seen_ < 0) fail("snapshot: inconsistent state for cache policy ", describe());
}

}  // namespace endless
