// The forward pass of the LLaMA family, readable top to bottom (see forward.cpp), over a batch of
// tokens from one or several sequences at once, so the weights are read once for all of them.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "kernels/gemm.h"
#include "memory/kv_store.h"
#include "memory/policy.h"
#include "memory/rope.h"
#include "model/model.h"
#include "util/aligned.h"
#include "util/thread_pool.h"

namespace endless {

// One stream's state: its cache policy and the keys and values the policy keeps.
struct Sequence {
  std::unique_ptr<MemoryPolicy> policy;
  KVStore store;
  MemoryConfig config;
};

// Part of a batch: tokens appended to one sequence.
struct BatchPart {
  Sequence* seq = nullptr;
  std::span<const int32_t> tokens;
  bool all_logits = false;  // logits for every token, or only for the last
};

class Engine {
 public:
  Engine(std::shared_ptr<const Model> model, int n_threads = 1);

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  ThreadPool& pool() { return pool_; }
  // Use the plain reference loops for attention (tests compare the fast path against them).
  void set_reference(bool on) { reference_ = on; }

  // A new, empty sequence with its memory allocated up front (the policy's bound).
  std::unique_ptr<Sequence> new_sequence(const MemoryConfig& memory) const;

  // Runs the parts through the model, appending their tokens to their sequences. Each part's
  // tokens must fit its policy's batch limit. Returns logits, n_vocab per row: for each part in
  // order, one row per token if all_logits, else one row for its last token.
  const std::vector<float>& forward(std::span<const BatchPart> parts);

  // Convenience: one sequence; splits `tokens` into batches of at most memory.max_batch.
  const std::vector<float>& eval(Sequence& seq, std::span<const int32_t> tokens, bool all_logits);

 private:
  void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y);
  // Several products of the same activations (Q, K and V; gate and up) in one parallel region,
  // their rows handed out as one range, so the threads meet once instead of once per product.
  // Products whose weights differ in type or row length from the first run on their own.
  struct Product {
    const Weight* w;
    float* y;
  };
  void matmul_group(std::span<const Product> products, const float* x, int64_t n_tokens);
  // fn(begin, end) over the n rows (tokens) of a batch: the work between the products that is
  // done row by row (norms, rotations, cache writes, SiLU, residual sums, converting the
  // activations), split over the threads where there are two rows or more. Done by the calling
  // thread alone, it left the others waiting 17% of an eight-session decode step.
  template <typename F>
  void for_rows(int64_t n, F&& fn) {
    if (n >= 2 && pool_.size() > 1) pool_.parallel_for(n, fn);
    else fn(int64_t{0}, n);
  }
  // Attention of one part's new tokens: the reference (forward.cpp, plain loops) and the fast
  // path (attention_fast.cpp: many keys' scores side by side, straight from the cache's key
  // tiles), which is tested against it. ENDLESS_REFERENCE=1 selects the former.
  void attention(int layer, const BatchPart& part, const float* q, float* out);
  void attention_reference(int layer, const BatchPart& part, const float* q, float* out);
  void attention_fast(int layer, const BatchPart& part, const float* q, float* out);
  // The fast path for many small parts (decoding several sequences): the parts' tokens and KV
  // heads handed out to the threads together, instead of one part at a time spread over threads
  // that mostly wait.
  void attention_fast_parts(int layer, std::span<const BatchPart> parts, const float* q, float* out);

  std::shared_ptr<const Model> model_;
  Rope rope_;
  ThreadPool pool_;
  // Scratch, grown to the largest batch seen and then reused: no allocation per token.
  // Cache-line aligned, as the kernels' 64-byte loads run best (util/aligned.h).
  AlignedVector<float> x_, xb_, q_, k_, v_, att_, ffa_, ffb_;
  std::vector<float> logits_, all_logits_;
  AlignedVector<uint8_t> act_;
  kernels::GemmInput gemm_in_;  // act_ laid out for the tiled products
  std::vector<int64_t> part_rows_;   // each side-by-side part's first row
  std::vector<int64_t> part_units_;  // and its first unit of attention work
  bool reference_ = false;
  std::vector<int64_t> slots_;
  std::vector<const BatchPart*> row_part_;  // the part each row of the batch belongs to
  std::vector<double> key_pos_;
  std::vector<float> key_angles_;  // per row: its position's n_rot / 2 cos, then n_rot / 2 sin
};

}  // namespace endless
