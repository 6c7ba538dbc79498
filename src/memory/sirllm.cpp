#include "memory/sirllm.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "util/error.h"

namespace endless {

SirLLMPolicy::SirLLMPolicy(int n_sink, int64_t window, int64_t keep, double decay,
                           std::vector<int32_t> marker, int max_batch, int64_t decay_every, double max_nll)
    : n_sink_(n_sink),
      keep_(keep),
      recent_(window - n_sink - keep),
      decay_(decay),
      decay_every_(decay_every),
      max_nll_(max_nll),
      marker_(std::move(marker)),
      max_batch_(max_batch) {
  if (n_sink < 0) fail("sirllm cache: the number of sink tokens must not be negative");
  if (keep < 0) fail("sirllm cache: the number of kept tokens must not be negative");
  if (recent_ < 1)
    fail("sirllm cache: the window (", window, ") must be larger than the sinks (", n_sink,
         ") plus the kept tokens (", keep, ")");
  if (!(decay > 0 && decay <= 1)) fail("sirllm cache: the decay must be in (0, 1], got ", decay);
  if (max_batch < 1) fail("sirllm cache: batch size must be positive");
  if (decay_every < 0) fail("sirllm cache: the decay interval must not be negative");
  if (!(max_nll >= 0)) fail("sirllm cache: the noise ceiling must not be negative");
  k0_ = n_sink_;
  l0_ = k0_ + 2 * keep_;
  region_first_ = next_candidate_ = n_sink_;
  pos_.assign(capacity(), -1);
  score_.assign(capacity(), 0.0f);
  turn_.assign(capacity(), 0);
}

std::string SirLLMPolicy::describe() const {
  return cat("sirllm ", n_sink_, "+", keep_, "+", recent_, " decay ", decay_,
             decay_every_ > 0 ? cat(" every ", decay_every_) : std::string(),
             max_nll_ > 0 ? cat(" max nll ", std::round(max_nll_ * 100) / 100) : std::string());
}

int64_t SirLLMPolicy::retained() const {
  const int64_t sinks = std::min<int64_t>(n_seen_, n_sink_);
  const int64_t recent = std::max<int64_t>(0, n_seen_ - n_sink_);
  return sinks + k_live_ + std::min(recent, recent_);
}

int64_t SirLLMPolicy::slot_of(int64_t pos) const {
  if (pos < 0 || pos >= n_seen_) return -1;
  if (pos < n_sink_) return pos;
  if (pos >= std::max(region_first_, next_candidate_) && pos < region_first_ + region_used_)
    return local_slot(pos);
  for (int64_t s = k0_; s < k0_ + k_end_; ++s)
    if (pos_[s] == pos) return s;
  return -1;
}

void SirLLMPolicy::squeeze_kept(KVStore& store) {
  const int64_t end = k0_ + k_end_;
  int64_t w = k0_;
  for (int64_t s = k0_; s < end;) {
    if (pos_[s] < 0) {
      ++s;
      continue;
    }
    int64_t e = s;
    while (e < end && pos_[e] >= 0) ++e;
    if (w != s) {
      store.move(s, w, e - s);
      std::copy(pos_.begin() + s, pos_.begin() + e, pos_.begin() + w);
      std::copy(score_.begin() + s, score_.begin() + e, score_.begin() + w);
      std::copy(turn_.begin() + s, turn_.begin() + e, turn_.begin() + w);
    }
    w += e - s;
    s = e;
  }
  std::fill(pos_.begin() + w, pos_.begin() + end, -1);
  k_end_ = w - k0_;
}

// A token that has left every future window: into the kept set, or forgotten.
void SirLLMPolicy::consider(int64_t pos, KVStore& store) {
  if (keep_ == 0) return;
  const int64_t from = local_slot(pos);
  if (k_live_ == keep_) {
    // The lowest score; among equals the oldest (slots are in stream order).
    int64_t worst = -1;
    for (int64_t s = k0_; s < k0_ + k_end_; ++s)
      if (pos_[s] >= 0 && (worst < 0 || score_[s] < score_[worst])) worst = s;
    if (score_[from] < score_[worst]) return;
    pos_[worst] = -1;
    --k_live_;
  }
  if (k_end_ == 2 * keep_) squeeze_kept(store);
  const int64_t to = k0_ + k_end_++;
  store.move(from, to, 1);
  pos_[to] = pos;
  score_[to] = score_[from];
  turn_[to] = turn_[from];
  ++k_live_;
}

void SirLLMPolicy::rebuild_runs() {
  runs_.clear();
  int64_t rank = 0;
  for (int64_t s = k0_; s < k0_ + k_end_; ++s) {
    if (pos_[s] < 0) continue;
    if (!runs_.empty() && runs_.back().slot_end == s &&
        runs_.back().pos + (s - runs_.back().slot_begin) == pos_[s])
      runs_.back().slot_end = s + 1;
    else
      runs_.push_back({s, s + 1, rank, pos_[s]});
    ++rank;
  }
}

void SirLLMPolicy::begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) {
  if (n > max_batch_) fail("sirllm cache: batch of ", n, " exceeds the maximum of ", max_batch_);
  // Tokens that no future query sees in its recent window compete for the kept set.
  const int64_t frontier = n_seen_ - recent_ + 1;
  bool changed = false;
  for (int64_t p = std::max<int64_t>(next_candidate_, n_sink_); p < frontier; ++p) {
    consider(p, store);
    changed = true;
  }
  next_candidate_ = std::max(next_candidate_, frontier);

  // The recent region, compacted to what future windows still need when the batch would not fit.
  const int64_t new_local = std::max<int64_t>(0, n_seen_ + n - std::max<int64_t>(n_seen_, n_sink_));
  if (region_used_ + new_local > recent_ + max_batch_) {
    const int64_t keep_from = std::max(region_first_, frontier);
    const int64_t drop = keep_from - region_first_;
    const int64_t keep = region_used_ - drop;
    store.move(l0_ + drop, l0_, keep);
    std::copy(pos_.begin() + l0_ + drop, pos_.begin() + l0_ + drop + keep, pos_.begin() + l0_);
    std::copy(score_.begin() + l0_ + drop, score_.begin() + l0_ + drop + keep, score_.begin() + l0_);
    std::copy(turn_.begin() + l0_ + drop, turn_.begin() + l0_ + drop + keep, turn_.begin() + l0_);
    std::fill(pos_.begin() + l0_ + keep, pos_.end(), -1);
    region_first_ = keep_from;
    region_used_ = keep;
  }

  for (int i = 0; i < n; ++i) {
    const int64_t t = n_seen_ + i;
    key_pos[i] = static_cast<double>(t);
    int64_t slot;
    if (t < n_sink_) {
      slot = t;
    } else {
      slot = local_slot(t);
      ++region_used_;
    }
    slots[i] = slot;
    const int64_t turn = static_cast<int>(batch_turn_.size()) == n ? batch_turn_[i] : turns_;
    pos_[slot] = t;
    turn_[slot] = turn;
    score_[slot] = 0.0f;
    for (const auto& [p, v] : pending_)
      if (p == t) score_[slot] = static_cast<float>(v * std::pow(decay_, static_cast<double>(turns_ - turn)));
  }
  std::erase_if(pending_, [&](const auto& e) { return e.first < n_seen_ + n; });
  batch_turn_.clear();
  if (changed) rebuild_runs();
}

void SirLLMPolicy::spans(int, int i, std::vector<Span>& out) const {
  const int64_t t = n_seen_ + i;
  out.clear();
  if (t < n_sink_) {
    out.push_back({0, t + 1, static_cast<double>(t)});
    return;
  }
  const int64_t start = std::max<int64_t>(n_sink_, t - recent_ + 1);
  // In the cache: the sinks, the kept tokens in stream order, then the recent window; the query
  // sits right after. Kept keys were rotated at their stream positions, so each run of them is
  // attended with the query moved by the run's offset between cache and stream positions.
  const int64_t query_in_cache = n_sink_ + k_live_ + (t - start);
  if (n_sink_ > 0) out.push_back({0, n_sink_, static_cast<double>(query_in_cache)});
  for (const Run& r : runs_)
    out.push_back({r.slot_begin, r.slot_end, static_cast<double>(query_in_cache - (n_sink_ + r.rank) + r.pos)});
  out.push_back({local_slot(start), local_slot(t) + 1, static_cast<double>(t)});
}

void SirLLMPolicy::observe_tokens(const int32_t* ids, int n) {
  batch_turn_.resize(n);
  for (int i = 0; i < n; ++i) {
    batch_turn_[i] = turns_;
    // observe_tokens comes before begin_batch: n_seen_ is the batch's first position.
    const bool interval_ends = decay_every_ > 0 && (n_seen_ + i + 1) % decay_every_ == 0;
    if (!marker_.empty()) {
      tail_.push_back(ids[i]);
      if (tail_.size() > marker_.size()) tail_.erase(tail_.begin());
      if (tail_ == marker_) {
        end_turn();  // the marker closes the turn it belongs to
        tail_.clear();
        continue;  // one turn ends here, not two
      }
    }
    if (interval_ends) end_turn();
  }
}

void SirLLMPolicy::observe_nll(int64_t first, const float* nll, int n) {
  for (int j = 0; j < n; ++j) {
    const int64_t p = first + j;
    float v = nll[j];
    if (std::isnan(v) || v < 0) v = 0;
    if (std::isinf(v)) v = std::numeric_limits<float>::max();
    if (max_nll_ > 0 && v > max_nll_) v = 0;  // noise, not information (MemoryConfig::sir_max_nll)
    if (p >= n_seen_) {
      if (p >= n_seen_ + max_batch_) continue;
      std::erase_if(pending_, [&](const auto& e) { return e.first == p; });
      pending_.push_back({p, v});
      continue;
    }
    const int64_t s = slot_of(p);
    if (s < 0) continue;
    score_[s] = static_cast<float>(v * std::pow(decay_, static_cast<double>(turns_ - turn_[s])));
  }
}

void SirLLMPolicy::end_turn() {
  ++turns_;
  const auto d = static_cast<float>(decay_);
  for (size_t s = 0; s < pos_.size(); ++s)
    if (pos_[s] >= 0) score_[s] *= d;
}

std::vector<int64_t> SirLLMPolicy::kept() const {
  std::vector<int64_t> out;
  for (int64_t s = k0_; s < k0_ + k_end_; ++s)
    if (pos_[s] >= 0) out.push_back(pos_[s]);
  return out;
}

float SirLLMPolicy::score(int64_t pos) const {
  const int64_t s = slot_of(pos);
  return s < 0 ? std::numeric_limits<float>::quiet_NaN() : score_[s];
}

std::vector<int64_t> SirLLMPolicy::save_state() const {
  std::vector<int64_t> s = {n_seen_, turns_, k_end_, k_live_, region_first_, region_used_, next_candidate_};
  s.push_back(static_cast<int64_t>(pending_.size()));
  for (const auto& [p, v] : pending_) {
    s.push_back(p);
    s.push_back(std::bit_cast<int32_t>(v));
  }
  s.push_back(static_cast<int64_t>(tail_.size()));
  for (int32_t t : tail_) s.push_back(t);
  for (size_t i = 0; i < pos_.size(); ++i) {
    s.push_back(pos_[i]);
    s.push_back(std::bit_cast<int32_t>(score_[i]));
    s.push_back(turn_[i]);
  }
  return s;
}

void SirLLMPolicy::load_state(const std::vector<int64_t>& s) {
  auto bad = [&] { fail("snapshot: inconsistent state for cache policy ", describe()); };
  size_t i = 0;
  auto next = [&]() -> int64_t {
    if (i >= s.size()) bad();
    return s[i++];
  };
  n_seen_ = next();
  turns_ = next();
  k_end_ = next();
  k_live_ = next();
  region_first_ = next();
  region_used_ = next();
  next_candidate_ = next();
  const int64_t n_pending = next();
  if (n_pending < 0 || n_pending > max_batch_) bad();
  pending_.clear();
  for (int64_t k = 0; k < n_pending; ++k) {
    const int64_t p = next();
    pending_.push_back({p, std::bit_cast<float>(static_cast<int32_t>(next()))});
  }
  const int64_t n_tail = next();
  if (n_tail < 0 || n_tail > static_cast<int64_t>(marker_.size())) bad();
  tail_.clear();
  for (int64_t k = 0; k < n_tail; ++k) tail_.push_back(static_cast<int32_t>(next()));
  if (s.size() - i != 3 * pos_.size()) bad();
  for (size_t k = 0; k < pos_.size(); ++k) {
    pos_[k] = next();
    score_[k] = std::bit_cast<float>(static_cast<int32_t>(next()));
    turn_[k] = next();
  }
  if (n_seen_ < 0 || turns_ < 0 || k_end_ < 0 || k_end_ > 2 * keep_ || k_live_ < 0 || k_live_ > keep_ ||
      region_first_ < n_sink_ || region_used_ < 0 || region_used_ > recent_ + max_batch_ ||
      next_candidate_ < n_sink_)
    bad();
  int64_t live = 0;
  for (int64_t k = k0_; k < k0_ + k_end_; ++k) live += pos_[k] >= 0;
  if (live != k_live_) bad();
  batch_turn_.clear();
  rebuild_runs();
}

}  // namespace endless
