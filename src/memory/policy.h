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
#include "memory/rope.h"

namespace endless {

struct Span {
  int64_t begin = 0;     // first slot
  int64_t end = 0;       // one past the last slot
  double query_pos = 0;  // position to rotate the query at when attending to this span
};

struct MemoryConfig {
  std::string policy = "full";  // full | window | sink | shift | sirllm | infllm
  int64_t n_ctx = 2048;         // full: most tokens held; shift: cache size
  int n_sink = 4;               // sink/sirllm/infllm: attention-sink tokens kept from the start
  int64_t window = 512;         // sink/window/sirllm/infllm: tokens each query sees in its
                                // window, sinks included (infllm adds retrieved blocks)
  int64_t n_keep = 0;           // shift: tokens kept at the start when the cache shifts
  TensorType kv_type = TensorType::F16;
  int max_batch = 512;          // most tokens in one forward pass

  // sirllm: tokens of the window kept for their self-information (-1: a quarter of the window),
  // the decay of every score at a turn boundary, and the token ids that mark one (empty: only
  // MemoryPolicy::end_turn marks turns).
  int64_t sir_keep = -1;
  double sir_decay = 0.9;
  // sirllm: also end a turn after every sir_decay_every tokens (0: never). A stream without turn
  // boundaries never decays its scores, so the most surprising tokens ever seen stay forever;
  // on text with noise (mis-encoded bytes, each surprising) that noise fills the kept set for good
  // (docs/streaming.md). A token-count turn makes old surprise fade as new text comes.
  int64_t sir_decay_every = 0;
  // sirllm: the most self-information a token can be kept for. A token whose NLL exceeds it was
  // judged less likely than a uniform guess over the vocabulary would be: the model could not
  // read it (mis-encoded bytes, foreign script), so it carries no information the model can use
  // later, and kept forever it is noise in front of every query (on stories260K it made sirllm
  // 28-35% worse than sink wherever such bytes appear; docs/streaming.md). Such a token scores 0.
  // -1: the log of the model's vocabulary size (set by Engine::new_sequence; no ceiling for a
  // policy made without a model); 0: no ceiling (SirLLM as published).
  double sir_max_nll = -1;
  std::vector<int32_t> turn_marker;

  // infllm: evicted tokens in blocks of block_size, each represented per head by the mean key of
  // its block_reps most-attended tokens; top_k blocks retrieved per layer and chunk. Memory sits
  // at one fixed distance from the query (mem_distance, 0: just before the window) or, with
  // mem_compact, at consecutive positions before the window. Blocks stay in RAM up to
  // mem_ram_mib, then go to an append-only file in memory_dir (none: the oldest are forgotten),
  // read back through an LRU of mem_hot_blocks block-layers.
  //
  // Layers below mem_skip_layers retrieve nothing (sinks and window only): the first layer's keys
  // carry token identity and position but no context, and the blocks that score highest there
  // are those whose tokens pull the most attention whatever the topic; on stories260K retrieving
  // in layer 0 costs more than any retrieval gains (docs/streaming.md). mem_score chooses how
  // blocks are scored: "query" is InfLLM's (the chunk's mean query . each block's
  // representative); "keys" compares what was just read with what each block holds: the cosine,
  // per KV head, between the mean un-rotated key of the last mem_key_window tokens and each
  // block's mean un-rotated key, both centred on the mean over the blocks held (the component
  // every key shares would otherwise decide the cosine), summed over heads.
  //
  // Defaults (since 2026-11-29): 3 blocks of 64 at distance 200, keys scoring with parts 4, a key
  // window of 64 with half-life 16, whitening, consensus from layer 0, scored every 8 tokens: the
  // one setting measured to meet every number of issue 7 on stories260K at once (recall at gaps
  // 600 and 2,000, perplexity within 1% of sink over 1M tokens, decode time under 2x sink's;
  // docs/streaming.md). With mem_score "query" the keys-only settings must be turned off
  // (use_query_scoring() does; the CLI does it for --mem-score query).
  int block_size = 64;
  int block_reps = 4;
  int top_k = 3;
  int mem_skip_layers = 1;
  std::string mem_score = "keys";
  int mem_key_window = 64;
  // Keys scoring with mem_key_halflife > 0: the recent mean key weighs each token of the key
  // window by 2^(-age / mem_key_halflife), age counted in tokens back from the chunk (the chunk's
  // own tokens weigh 1), instead of equally: the probe turns to a new topic within a few tokens
  // yet still averages over about 2.9 half-lives of text. 0: the flat mean.
  double mem_key_halflife = 16;
  // Keys scoring with mem_key_whiten: before the cosines, every dimension of the centred keys
  // (the recent mean and each block's parts) is divided by its standard deviation over the
  // blocks' parts the search scores, so that the few dimensions in which every key varies a lot
  // (whatever the text is about) do not decide the cosine alone.
  bool mem_key_whiten = true;
  // Keys scoring with mem_key_parts > 1: a block is represented by the mean keys of its parts of
  // block_size / mem_key_parts tokens and scores as its best part (a passage that fills part of
  // a block is found by that part, not diluted by the rest).
  int mem_key_parts = 4;
  // Keys scoring with mem_consensus: every retrieving layer takes the same blocks, chosen in the
  // first of them by the sum of every retrieving layer's scores (the layers the forward pass has
  // not reached yet score by the keys of the tokens before the chunk). One layer's choice is
  // noisy; on the recall benchmark each layer alone found the passage 67-72% of the time.
  bool mem_consensus = true;
  // With mem_consensus, the layers whose scores are summed: from this one on (-1: from the first
  // retrieving layer, mem_skip_layers). A layer below mem_skip_layers scores without retrieving:
  // layer 0's mean keys say which tokens a stretch of text holds, a poor guide on its own
  // (docs/streaming.md) but evidence the other layers' scores do not carry.
  int mem_consensus_from = 0;
  // Blocks are scored again only in batches holding a multiple of mem_retrieve_every (1: every
  // batch, as InfLLM); between, the blocks chosen last are attended again (already in the
  // cache: nothing to copy). Scoring costs O(blocks held) per layer, so in one-token decoding
  // deep into a stream a stride keeps the cost per token bounded.
  int mem_retrieve_every = 8;
  // The block index (BlockIndex) is searched in two levels: groups of mem_index_group blocks are
  // scored by their mean entry, then the blocks of the best mem_index_beam groups and of the
  // group being filled. Its RAM and the cost of a search grow with blocks / mem_index_group
  // instead of blocks; with at most mem_index_beam complete groups every block is scored.
  int mem_index_group = 64;
  int mem_index_beam = 4;
  int64_t mem_distance = 200;
  bool mem_compact = false;
  int64_t mem_ram_mib = 1024;
  std::string memory_dir;
  int mem_hot_blocks = 256;

  // InfLLM's own scoring (mem_score "query"), with the settings that apply to keys scoring only
  // (half-life, whitening, parts, consensus) turned off.
  void use_query_scoring() {
    mem_score = "query";
    mem_key_halflife = 0;
    mem_key_whiten = false;
    mem_key_parts = 1;
    mem_consensus = false;
    mem_consensus_from = -1;
  }
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
  // The most tokens one batch may bring, when the policy allows fewer than its config's
  // max_batch (shift with a small context); Engine::new_sequence lowers the sequence's max_batch
  // to it, so everything that splits by that splits right.
  virtual int batch_limit() const { return INT32_MAX; }

  // Makes room for n new tokens (n <= max_batch), moving stored slots if it compacts, and gives
  // each new token its slot and the position its key is rotated at. Throws Error when a policy
  // that cannot evict (full) is out of room.
  virtual void begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) = 0;
  // The spans new token i of the current batch attends to (itself included), in `layer`.
  virtual void spans(int layer, int i, std::vector<Span>& out) const = 0;
  // The batch has been stored in every layer.
  virtual void end_batch(int n) { n_seen_ += n; }

  // --- Hooks for policies that need more than slots and spans. Each default does nothing, so
  // a policy that does not override them costs nothing; callers may skip a hook whose wants_*
  // says false.

  // The model's shape and RoPE, once, when the sequence is created (Engine::new_sequence).
  virtual void set_model(const RopeConfig& rope, int n_layers, int n_heads, int n_kv_heads) {}
  // The ids of the next batch's tokens, just before begin_batch (turn markers).
  virtual void observe_tokens(const int32_t* ids, int n) {}
  // Before attention in `layer`: the un-rotated queries of the batch's n new tokens (n_heads *
  // head_dim each). A retrieving policy chooses this layer's memory here and may write slots of
  // this layer outside those spans() currently lists for the batch's other layers.
  virtual void before_attention(int layer, const float* q, int n, KVStore& store) {}
  // Whether the attention code should report its softmax weights (observe_attention).
  virtual bool wants_attention() const { return false; }
  // The softmax weights of query head `head` of new token i in `layer` over the keys of
  // spans(layer, i), in span order, before they are rounded to the cache's type. Called
  // concurrently for different i.
  virtual void observe_attention(int layer, int i, int head, const float* w, int64_t n) {}
  // Whether the caller should report each token's NLL (observe_nll).
  virtual bool wants_nll() const { return false; }
  // nll[j] = -log P(token at stream position first + j | what came before); the positions may
  // be consumed already or be the next ones to come.
  virtual void observe_nll(int64_t first, const float* nll, int n) {}
  // The end of a dialogue turn (an API call; or a turn marker seen by observe_tokens).
  virtual void end_turn() {}

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
