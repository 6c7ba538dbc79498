#pragma once

#include "memory/policy.h"

namespace endless {

// SirLLM (arXiv 2405.12528): StreamingLLM's sinks and recent window, plus a budget of older tokens
// kept for their self-information -log P(token), which the caller reports (observe_nll) from the
// pass that predicted them. A token leaving the recent window joins the kept set if the set has
// room or the token scores at least as high as the set's lowest (ties keep the newer token); the
// lowest is then evicted. Every score decays by a factor at each turn boundary (end_turn, or a
// configured marker seen by observe_tokens). Positions are positions inside the cache, as in
// `sink`: sinks, then the kept tokens in stream order, then the recent window, consecutively.
//
// Layout of the slots: [0, n_sink) sinks; then a kept region of 2 * keep slots filled in stream
// order (evictions leave holes, squeezed out when the region's end is reached); then the recent
// region of recent + max_batch slots, compacted like `sink`'s.
class SirLLMPolicy final : public MemoryPolicy {
 public:
  // decay_every > 0: a turn also ends after every decay_every tokens of the stream. max_nll > 0:
  // a token whose self-information exceeds it scores 0 (noise the model could not read; see
  // MemoryConfig::sir_max_nll).
  SirLLMPolicy(int n_sink, int64_t window, int64_t keep, double decay, std::vector<int32_t> marker,
               int max_batch, int64_t decay_every = 0, double max_nll = 0);
  std::string describe() const override;
  int64_t capacity() const override { return k0_ + 2 * keep_ + recent_ + max_batch_; }
  int64_t retained() const override;
  void begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) override;
  void spans(int layer, int i, std::vector<Span>& out) const override;
  void observe_tokens(const int32_t* ids, int n) override;
  bool wants_nll() const override { return keep_ > 0; }
  void observe_nll(int64_t first, const float* nll, int n) override;
  void end_turn() override;
  std::vector<int64_t> save_state() const override;
  void load_state(const std::vector<int64_t>& s) override;

  // For tests and diagnostics: the stream positions in the kept set, in stream order, and the
  // current (decayed) score of a held token (NaN if it is not held).
  std::vector<int64_t> kept() const;
  float score(int64_t pos) const;
  int64_t turns() const { return turns_; }

 private:
  int64_t local_slot(int64_t t) const { return l0_ + (t - region_first_); }
  int64_t slot_of(int64_t pos) const;  // -1 if not held
  void consider(int64_t pos, KVStore& store);
  void squeeze_kept(KVStore& store);
  void rebuild_runs();

  int n_sink_;
  int64_t keep_, recent_;
  double decay_;
  int64_t decay_every_;
  double max_nll_;
  std::vector<int32_t> marker_;
  int max_batch_;
  int64_t k0_, l0_;  // first slot of the kept and of the recent region

  // Per slot: the stream position held (-1: empty), its decayed score, and its turn.
  std::vector<int64_t> pos_;
  std::vector<float> score_;
  std::vector<int64_t> turn_;
  int64_t k_end_ = 0, k_live_ = 0;  // kept region: slots used (holes included), tokens held
  int64_t region_first_ = 0, region_used_ = 0;
  int64_t next_candidate_ = 0;  // first position not yet considered for the kept set
  int64_t turns_ = 0;
  std::vector<std::pair<int64_t, float>> pending_;  // NLLs of positions not consumed yet
  std::vector<int64_t> batch_turn_;                 // turn of each token of the coming batch
  std::vector<int32_t> tail_;                       // last tokens seen, for the marker

  // The kept set as runs of consecutive positions in consecutive slots, rebuilt when it changes.
  struct Run {
    int64_t slot_begin, slot_end, rank, pos;
  };
  std::vector<Run> runs_;
};

}  // namespace endless
