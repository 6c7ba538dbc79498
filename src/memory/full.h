#pragma once

#include "memory/policy.h"

namespace endless {

class FullPolicy final : public MemoryPolicy {
 public:
  explicit FullPolicy(int64_t n_ctx);
  std::string describe() const override;
  int64_t capacity() const override { return n_ctx_; }
  int64_t retained() const override { return n_seen_; }
  void begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) override;
  void spans(int layer, int i, std::vector<Span>& out) const override;
  std::vector<int64_t> save_state() const override;
  void load_state(const std::vector<int64_t>& s) override;

 private:
  int64_t n_ctx_;
};

}  // namespace endless
