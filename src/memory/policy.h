// The KV-cache policy interface: what a sequence remembers, where each token's key and value
// live, and which stored tokens each new token attends to, at which positions.
//
// Keys are rotated once, when stored, at a position the policy chooses (usually the token's
// position in the stream), and never re-rotated. Attention is computed over *spans* of slots;
// each span names the position at which the query is rotated for it. RoPE scores depend only on
// the difference of the two positions, so a span whose tokens should appear at positions shifted
// by a constant from where they were stored just rotates the query by that constant. Eviction is
// O(1), there is no compounding rotation error, and positions stay exact however long the stream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/tensor_type.h"
#include "memory/kv_store.h"

namespace endless {

struct Span {
  int64_t begin = 0;     // first slot
  int64_t end = 0;       // one past the last slot
  double query_pos = 0;  // position to rotate the query at when attending to this span
};

struct MemoryConfig {
  std::string policy = "full";  // full | window | sink | shift
  int64_t n_ctx = 2048;         // full: most tokens held; shift: cache size
  int n_sink = 4;               // sink: attention-sink tokens kept from the start of the stream
  int64_t window = 512;         // sink/window: tokens held in all (sinks included)
  int64_t n_keep = 0;           // shift: tokens kept at the start when the cache shifts
  TensorType kv_type = TensorType::F16;
  int max_batch = 512;          // most tokens in one forward pass
};

class MemoryPolicy {
 public:
  virtual ~MemoryPolicy() = default;

  // A short description, e.g. "sink 4+508".
  virtual std::string describe() const = 0;
  // Slots the KV store needs: the policy's memory bound, fixed for the life of the sequence.
  virtual int64_t capacity() const = 0;
  // Tokens whose keys and values are held now.
  virtual int64_t retained() const = 0;

  // Makes room for n new tokens (n <= max_batch), moving stored slots if it compacts, and gives
  // each new token its slot and the position its key is rotated at. Throws Error when a policy
  // that cannot evict (full) is out of room.
  virtual void begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) = 0;
  // The spans new token i of the current batch attends to (itself included), in `layer`.
  virtual void spans(int layer, int i, std::vector<Span>& out) const = 0;
  // The batch has been stored in every layer.
  virtual void end_batch(int n) { n_seen_ += n; }

  // Feedback from the forward pass, for policies that use it (default: ignored).
  virtual void observe_nll(const float* nll, int n) {}

  // The policy's own state (counters, not the KV store), for snapshots of a sequence: a list of
  // integers the policy writes and reads back in the same order.
  virtual std::vector<int64_t> save_state() const { return {n_seen_}; }
  virtual void load_state(const std::vector<int64_t>& s);

  // Tokens of the stream consumed so far.
  int64_t n_seen() const { return n_seen_; }
  void reset_seen(int64_t n) { n_seen_ = n; }

 protected:
  int64_t n_seen_ = 0;
};

// Builds the policy a config names; Error for an unknown policy or inconsistent sizes.
std::unique_ptr<MemoryPolicy> make_policy(const MemoryConfig& config);

// The policy names make_policy understands, for help texts.
const std::vector<std::string>& policy_names();

}  // namespace endless
