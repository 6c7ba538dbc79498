#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "memory/block_index.h"
#include "memory/block_store.h"
#include "memory/policy.h"

namespace endless {

// InfLLM (arXiv 2402.04617), training-free block memory: n_init sink tokens, a local window with
// exact relative positions, and the evicted tokens in blocks of block_size. Each block is
// represented, per query head, by the mean un-rotated key of the block_reps tokens that received
// the most attention from that head while they were in the window. Before attention in each layer
// (from layer mem_skip_layers on) every block is scored, by the chunk's mean query against its
// representative (mem_score "query", InfLLM's) or by how close its mean key is to the mean key of
// the last tokens read (mem_score "keys"; see MemoryConfig); the top_k are attended together with
// the sinks and the window in one softmax.
//
// Positions: a key leaving the window for a block is un-rotated once (rotated by minus its
// stream position), so a block holds position-free keys. By default every retrieved token sits at
// one distance from the query, just before the window (or mem_distance); with mem_compact the
// retrieved blocks sit at consecutive positions between the sinks and the window, in stream order
// (their keys then rotated at their offset inside the block). Before any block exists, and with
// top_k = 0, the policy is exactly `sink`.
//
// Slots: [0, n_init) sinks; then top_k block-sized slots holding this layer's retrieved blocks
// (a block already there from the previous chunk is not copied again); then the local region of
// window + block_size + max_batch slots, compacted like `sink`'s. Blocks themselves live in a
// BlockStore (RAM up to a budget, then a file); what they are scored by (a mean key or a
// representative per block and layer) in a BlockIndex, searched in two levels: the summaries of
// groups of mem_index_group blocks, then the blocks of the mem_index_beam best groups and of the
// group being filled. With at most mem_index_beam complete groups every block is scored.
class InfLLMPolicy final : public MemoryPolicy {
 public:
  explicit InfLLMPolicy(const MemoryConfig& c);
  ~InfLLMPolicy() override;
  std::string describe() const override;
  int64_t capacity() const override { return l0_ + region_cap_; }
  int64_t retained() const override;
  void begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) override;
  void spans(int layer, int i, std::vector<Span>& out) const override;
  void set_model(const RopeConfig& rope, int n_layers, int n_heads, int n_kv_heads) override;
  void before_attention(int layer, const float* q, int n, KVStore& store) override;
  // Attention mass is needed only for the representatives, which only "query" scoring uses.
  bool wants_attention() const override { return top_k_ > 0 && reps_ < block_ && !by_keys_; }
  void observe_attention(int layer, int i, int head, const float* w, int64_t n) override;
  std::vector<int64_t> save_state() const override;
  void load_state(const std::vector<int64_t>& s) override;

  // Diagnostics (tests, `endless eval recall`).
  int64_t n_blocks() const { return blocks_ ? blocks_->size() : 0; }
  int64_t first_alive_block() const { return blocks_ ? blocks_->first_alive() : 0; }
  // Stream positions [first, first + block_size) of block b.
  int64_t block_first(int64_t b) const { return n_init_ + b * block_; }
  // The blocks retrieved in `layer` for the current batch, in stream order.
  const std::vector<int64_t>& retrieved(int layer) const;
  // The representative of block b in `layer`: n_heads * head_dim floats (mem_score "query" only;
  // empty otherwise or for a block not held).
  std::vector<float> representative(int layer, int64_t b) const;
  // The mean un-rotated keys of block b in `layer`: mem_key_parts * kv_dim floats, part by part
  // (mem_score "keys" only).
  std::vector<float> mean_key(int layer, int64_t b) const;
  const BlockStore* block_store() const { return blocks_ ? &*blocks_ : nullptr; }
  const BlockIndex* block_index() const { return index_ ? &*index_ : nullptr; }
  // Blocks whose entry the last search in `layer` scored (all alive blocks without the index's
  // second level).
  int64_t scored_last(int layer) const { return ready_ ? scored_last_[layer] : 0; }
  int64_t blocks_loaded() const { return loads_; }  // block-layers copied into the cache

 private:
  int64_t local_slot(int64_t t) const { return l0_ + (t - region_first_); }
  void init(int n_layers, int kv_dim, int head_dim, int n_heads);
  void form_block(KVStore& store);
  // The top_k blocks by score in `layer`, in stream order (index_ searched in two levels).
  void search(int layer, const float* q, int n, const KVStore& store, std::vector<int64_t>& chosen);
  std::vector<float> entry(int layer, int64_t b) const;
  // The un-rotated key of stream position t (in the local region) in `layer`: kv_dim floats,
  // valid until the next call.
  const float* unrotated(int layer, int64_t t, const KVStore& store);
  void compact(KVStore& store, int64_t keep_from);
  int64_t* mass_buffer();  // this thread's attention-mass sums
  size_t mass_size() const { return static_cast<size_t>(n_layers_) * n_heads_ * region_cap_; }

  MemoryConfig cfg_;
  int n_init_;
  int64_t local_;
  int block_, reps_, top_k_;
  int skip_layers_;
  int retrieve_every_;
  bool rescore_ = true;  // this batch scores the blocks again
  int parts_ = 1;  // mean keys per block (by_keys_)
  bool consensus_ = false;  // mem_consensus
  bool by_keys_;  // mem_score "keys"
  int max_batch_;
  int64_t l0_, region_cap_;

  // Model geometry (set_model; kv heads and layers from the store).
  Rope rope_;
  int n_heads_ = 1, head_dim_ = 0, n_kv_heads_ = 1, n_layers_ = 0, kv_dim_ = 0;
  bool ready_ = false;

  int64_t region_first_ = 0, region_used_ = 0;
  int64_t next_block_ = 0;  // stream position of the next block's first token

  std::optional<BlockStore> blocks_;
  // Per block and layer: its mean un-rotated key (by_keys_, kv_dim floats) or its representative
  // (n_heads * head_dim floats).
  std::optional<BlockIndex> index_;
  std::vector<int64_t> scored_last_;
  // Un-rotated keys of the last mem_key_window tokens of finished batches, per layer (a ring:
  // position t in row t % mem_key_window, unrot_pos_ the position each row holds, -1 none);
  // unrot_chunk_ for a token of the current batch.
  std::vector<float> unrot_, unrot_chunk_;
  std::vector<int64_t> unrot_pos_;

  // Per layer: the block in each retrieval slot (-1: none), the retrieved blocks in stream order
  // with the slot of each, and whether retrieval ran for the current batch.
  std::vector<std::vector<int64_t>> slot_block_;
  std::vector<std::vector<int64_t>> retrieved_;
  std::vector<std::vector<int64_t>> retrieved_slot_;
  std::vector<char> layer_ready_;
  int64_t loads_ = 0;

  // Attention mass received by the tokens of the local region, per layer and query head, summed
  // in fixed point (2^-32) so the sum is exact and independent of the order the threads add in:
  // one buffer per thread that reports, added together when a block is formed.
  uint64_t id_;  // new whenever the buffers are replaced (threads cache a pointer by id)
  std::mutex mass_mu_;
  std::vector<std::pair<std::thread::id, std::unique_ptr<int64_t[]>>> mass_;
};

}  // namespace endless
