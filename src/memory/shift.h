#pragma once

#include "memory/policy.h"

namespace endless {

// llama.cpp's context shift, for comparison: when the cache of n_ctx tokens is full, keep the
// first n_keep, discard half of the rest, and move the later tokens' positions down. Unlike
// llama.cpp, keys are not re-rotated in place: the shifted span just rotates its query, so the
// shift itself adds no rounding error. The cache swings between about n_ctx/2 and n_ctx tokens.
class ShiftPolicy final : public MemoryPolicy {
 public:
  ShiftPolicy(int64_t n_ctx, int64_t n_keep, int max_batch);
  std::string describe() const override;
  int64_t capacity() const override { return n_ctx_; }
  int batch_limit() const override { return max_batch_; }
  int64_t retained() const override { return used_; }
  void begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) override;
  void spans(int layer, int i, std::vector<Span>& out) const override;
  std::vector<int64_t> save_state() const override;
  void load_state(const std::vector<int64_t>& s) override;
  void end_batch(int n) override;

 private:
  int64_t n_ctx_, n_keep_;
  int max_batch_;
  int64_t used_ = 0;       // slots in use; slot = position in the cache
  int64_t discarded_ = 0;  // tokens dropped so far (after the first n_keep)
};

}  // namespace endless
