#pragma once

#include "memory/policy.h"

namespace endless {

// StreamingLLM: the first n_sink tokens of the stream (attention sinks) plus the most recent
// window - n_sink tokens, evicting one token at a time. With n_sink = 0 this is the plain
// `window` baseline. Positions are positions inside the cache.
class SinkPolicy final : public MemoryPolicy {
 public:
  SinkPolicy(int n_sink, int64_t window, int max_batch);
  std::string describe() const override;
  int64_t capacity() const override { return n_sink_ + local_ + max_batch_; }
  int64_t retained() const override;
  void begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) override;
  void spans(int layer, int i, std::vector<Span>& out) const override;
  std::vector<int64_t> save_state() const override;
  void load_state(const std::vector<int64_t>& s) override;

 private:
  // Slot of stream position t >= n_sink in the local region.
  int64_t local_slot(int64_t t) const { return n_sink_ + (t - region_first_); }

  int n_sink_;
  int64_t local_;  // window - n_sink: recent tokens each query sees
  int max_batch_;
  // The local region holds stream positions [region_first_, region_first_ + region_used_) in
  // slots n_sink_.. ; it is compacted to its last local_ tokens when a batch would not fit.
  int64_t region_first_ = 0;
  int64_t region_used_ = 0;
};

}  // namespace endless
