#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

// Every multiply-add is written out; the fast paths beside this reference match it exactly.
#pragma GCC optimize("fp-contract=off")

namespace endless {
namespace {

// As ggml's rms_norm: squares rounded to float, summed in double; then x * scale, times weight.
void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

// Rotates n_heads heads of x at position pos. Whole positions below 2^16 take ggml's float
// arithmetic (kernels::rope_ggml), so that the keys and queries of a llama.cpp-sized context are
// bit for bit llama.cpp's; beyond, where float angles drift (~pos * 1e-7 rad), and for the
// fractional positions a policy may use, the double-precision Rope keeps streams exact.
void rotate(const Rope& rope, float* x, int n_heads, double pos) {
  const RopeConfig& r = rope.config();
  if (pos >= 0 && pos < 65536 && pos == std::floor(pos))
    kernels::rope_ggml(x, n_heads, r.head_dim, r.n_rot, static_cast<int64_t>(pos),
                       static_cast<float>(r.freq_base), static_cast<float>(r.freq_scale), r.neox);
  else
    rope.apply(x, n_heads, pos);
}

template <typename T>
void grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

Engine::Engine(std::shared_ptr<const Model> model, int n_threads)
    : model_(std::move(model)), rope_(model_->config().rope), pool_(n_threads) {
  const char* ref = std::getenv("ENDLESS_REFERENCE");
  reference_ = ref != nullptr && *ref != '\0' && *ref != '0';
}

std::unique_ptr<Sequence> Engine::new_sequence(const MemoryConfig& memory) const {
  auto seq = std::make_unique<Sequence>();
  seq->config = memory;
  seq->policy = make_policy(memory);
  seq->store = KVStore(config().n_layers, config().kv_dim(), seq->policy->capacity(), memory.kv_type);
  return seq;
}

void Engine::matmul(const Weight& w, const float* x, int64_t n_tokens, float* y) {
  grow(act_, kernels::activations_size(w.type, w.n_in, n_tokens));
  kernels::convert_activations(w.type, x, w.n_in, n_tokens, act_.data());
  pool_.parallel_for(w.n_out, [&](int64_t begin, int64_t end) {
    kernels::matmul_rows(w.type, w.data, w.n_in, w.n_out, act_.data(), n_tokens, y, begin, end);
  });
}

// Attention of the part's new tokens over the spans their policy gives, in one softmax across all
// spans. q holds the new tokens' un-rotated queries; out receives n_heads * head_dim values per
// token.
void Engine::attention(int layer, const BatchPart& part, const float* q, float* out) {
  if (reference_) attention_reference(layer, part, q, out);
  else attention_fast(layer, part, q, out);
}

// The arithmetic is that of llama.cpp's default CPU path (no flash attention), so that logits
// agree with it bit for bit:
//  - scores: K·q with q converted to the cache's type (rounded to half for an F16 cache), each a
//    dot product as ggml's mul_mat computes it (kernels::vec_dot_fn; for a batch of several
//    tokens and an F16 cache, kernels::batch_dot_fn), times 1/sqrt(head_dim);
//  - softmax over the keys padded with empty cells (-inf) to a multiple of 32, as llama.cpp pads
//    the cells it attends to, with ggml's exp in groups of sixteen (kernels::softmax_exp_row);
//  - the weights converted to the cache's type, and each output dimension a dot product of the
//    weights with that dimension's values over the same padded cells (ggml keeps the values
//    transposed for this, and the padding decides where its dot products switch to vector code).
void Engine::attention_reference(int layer, const BatchPart& part, const float* q, float* out) {
  const ModelConfig& c = config();
  const int n = static_cast<int>(part.tokens.size());
  const int group = c.n_heads / c.n_kv_heads;
  const int hd = c.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const KVStore& store = part.seq->store;
  const TensorType kv_type = store.type();
  const size_t es = store.elem_size();
  const MemoryPolicy& policy = *part.seq->policy;
  const bool batched = n >= 2;
  // ggml reaches llamafile's tinyBLAS for the scores only when it had to convert the query (F16).
  const kernels::VecDotFn score_dot = batched && kv_type == TensorType::F16
                                          ? kernels::batch_dot_fn(kv_type)
                                          : kernels::vec_dot_fn(kv_type);
  const kernels::VecDotFn value_dot =
      batched ? kernels::batch_dot_fn(kv_type) : kernels::vec_dot_fn(kv_type);

  // The number of cells llama.cpp would attend to: those the batch sees, padded to 32.
  int64_t n_cells = 0;
  {
    std::vector<Span> spans;
    for (int i = 0; i < n; ++i) {
      policy.spans(layer, i, spans);
      int64_t keys = 0;
      for (const Span& span : spans) keys += span.end - span.begin;
      n_cells = std::max(n_cells, keys);
    }
  }
  const int64_t n_kv = std::max<int64_t>(32, (n_cells + 31) / 32 * 32);

  pool_.parallel_for(n, [&](int64_t begin, int64_t end) {
    std::vector<Span> spans;
    std::vector<float> qr(c.q_dim()), scores(static_cast<size_t>(n_kv) * c.n_heads), p(n_kv);
    std::vector<uint8_t> qt(c.q_dim() * es), pt(n_kv * es);
    std::vector<uint8_t> vt(static_cast<size_t>(c.kv_dim()) * n_kv * es);  // [kv_dim][n_kv]
    for (int64_t i = begin; i < end; ++i) {
      policy.spans(layer, static_cast<int>(i), spans);
      std::fill(scores.begin(), scores.end(), -INFINITY);
      std::fill(vt.begin(), vt.end(), 0);

      // Scores: each span rotates the query at its own position.
      int64_t j = 0;
      for (const Span& span : spans) {
        std::memcpy(qr.data(), q + i * c.q_dim(), c.q_dim() * sizeof(float));
        rotate(rope_, qr.data(), c.n_heads, span.query_pos);
        kernels::quantize_row(kv_type, qr.data(), qt.data(), c.q_dim());
        for (int64_t slot = span.begin; slot < span.end; ++slot, ++j) {
          const uint8_t* key = store.key(layer, slot);
          for (int h = 0; h < c.n_heads; ++h)
            scores[h * n_kv + j] =
                score_dot(hd, key + (h / group) * hd * es, qt.data() + h * hd * es) * scale;
          const uint8_t* value = store.value(layer, slot);
          for (int e = 0; e < c.kv_dim(); ++e)
            std::memcpy(vt.data() + (e * n_kv + j) * es, value + e * es, es);
        }
      }
      // Softmax per head, then the weighted sum of the values.
      float* o = out + i * c.q_dim();
      for (int h = 0; h < c.n_heads; ++h) {
        const float* sh = scores.data() + h * n_kv;
        const float mx = *std::max_element(sh, sh + n_kv);
        const double sum = kernels::softmax_exp_row(sh, p.data(), n_kv, mx);
        const float inv = static_cast<float>(1.0 / sum);
        for (float& x : p) x *= inv;
        kernels::quantize_row(kv_type, p.data(), pt.data(), n_kv);
        for (int d = 0; d < hd; ++d)
          o[h * hd + d] =
              value_dot(n_kv, vt.data() + ((h / group) * hd + d) * n_kv * es, pt.data());
      }
    }
  });
}

const std::vector<float>& Engine::forward(std::span<const BatchPart> parts) {
  const ModelConfig& c = config();
  int64_t n = 0, n_out_rows = 0;
  for (const auto& p : parts) {
    if (p.tokens.empty()) fail("forward: empty batch part");
    if (static_cast<int64_t>(p.tokens.size()) > p.seq->config.max_batch)
      fail("forward: batch of ", p.tokens.size(), " tokens exceeds max_batch ", p.seq->config.max_batch);
    n += static_cast<int64_t>(p.tokens.size());
    n_out_rows += p.all_logits ? static_cast<int64_t>(p.tokens.size()) : 1;
  }
  grow(x_, n * c.dim);
  grow(xb_, n * c.dim);
  grow(q_, n * c.q_dim());
  grow(k_, n * c.kv_dim());
  grow(v_, n * c.kv_dim());
  grow(att_, n * c.q_dim());
  grow(ffa_, n * c.ff);
  grow(ffb_, n * c.ff);
  grow(slots_, n);
  grow(key_pos_, n);

  // Token embeddings; each sequence's policy makes room and places the new tokens.
  {
    int64_t row = 0;
    for (const auto& p : parts) {
      for (int32_t t : p.tokens) model_->embed(t, x_.data() + (row++) * c.dim);
    }
    row = 0;
    for (const auto& p : parts) {
      p.seq->policy->begin_batch(static_cast<int>(p.tokens.size()), p.seq->store,
                                 slots_.data() + row, key_pos_.data() + row);
      row += static_cast<int64_t>(p.tokens.size());
    }
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = model_->layer(l);

    // Attention block: x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
    for (int64_t t = 0; t < n; ++t)
      rmsnorm(xb_.data() + t * c.dim, x_.data() + t * c.dim, L.attn_norm.data(), c.dim, c.rms_eps);
    matmul(L.wq, xb_.data(), n, q_.data());
    matmul(L.wk, xb_.data(), n, k_.data());
    matmul(L.wv, xb_.data(), n, v_.data());
    if (c.qkv_bias) {
      for (int64_t t = 0; t < n; ++t) {
        for (int i = 0; i < c.q_dim(); ++i) q_[t * c.q_dim() + i] += L.bq[i];
        for (int i = 0; i < c.kv_dim(); ++i) k_[t * c.kv_dim() + i] += L.bk[i];
        for (int i = 0; i < c.kv_dim(); ++i) v_[t * c.kv_dim() + i] += L.bv[i];
      }
    }
    // Keys are rotated once, at the position the policy chose, and stored.
    {
      int64_t row = 0;
      for (const auto& p : parts)
        for (size_t i = 0; i < p.tokens.size(); ++i, ++row) {
          float* k = k_.data() + row * c.kv_dim();
          rotate(rope_, k, c.n_kv_heads, key_pos_[row]);
          p.seq->store.write(l, slots_[row], k, v_.data() + row * c.kv_dim());
        }
    }
    {
      int64_t row = 0;
      for (const auto& p : parts) {
        attention(l, p, q_.data() + row * c.q_dim(), att_.data() + row * c.q_dim());
        row += static_cast<int64_t>(p.tokens.size());
      }
    }
    matmul(L.wo, att_.data(), n, xb_.data());
    for (int64_t i = 0; i < n * c.dim; ++i) x_[i] += xb_[i];

    // The last layer's feed-forward block runs only on the rows whose logits are wanted, moved to
    // the front of x: nothing else needs them, and llama.cpp does the same, so its products there
    // have as many tokens as ours, which decides their arithmetic (see kernels::batch_dot_fn).
    int64_t rows = n;
    if (l == c.n_layers - 1) {
      int64_t row = 0, out_row = 0;
      for (const auto& p : parts) {
        const int64_t np = static_cast<int64_t>(p.tokens.size());
        const int64_t first = p.all_logits ? row : row + np - 1;
        for (int64_t t = first; t < row + np; ++t, ++out_row)
          if (out_row != t)
            std::memcpy(x_.data() + out_row * c.dim, x_.data() + t * c.dim, c.dim * sizeof(float));
        row += np;
      }
      rows = n_out_rows;
    }

    // Feed-forward block (SwiGLU): x += W_down · (silu(W_gate·norm(x)) * W_up·norm(x)), SiLU as
    // ggml computes it (its own exp polynomial).
    for (int64_t t = 0; t < rows; ++t)
      rmsnorm(xb_.data() + t * c.dim, x_.data() + t * c.dim, L.ffn_norm.data(), c.dim, c.rms_eps);
    matmul(L.gate, xb_.data(), rows, ffa_.data());
    matmul(L.up, xb_.data(), rows, ffb_.data());
    for (int64_t t = 0; t < rows; ++t)
      kernels::silu_row(ffa_.data() + t * c.ff, ffa_.data() + t * c.ff, c.ff);
    for (int64_t i = 0; i < rows * c.ff; ++i) ffa_[i] *= ffb_[i];
    matmul(L.down, ffa_.data(), rows, xb_.data());
    for (int64_t i = 0; i < rows * c.dim; ++i) x_[i] += xb_[i];
  }

  for (const auto& p : parts) p.seq->policy->end_batch(static_cast<int>(p.tokens.size()));

  // Final norm and output projection of the rows whose logits are wanted (the first n_out_rows).
  for (int64_t t = 0; t < n_out_rows; ++t)
    rmsnorm(xb_.data() + t * c.dim, x_.data() + t * c.dim, model_->output_norm().data(), c.dim,
            c.rms_eps);
  logits_.resize(n_out_rows * c.n_vocab);
  matmul(model_->output(), xb_.data(), n_out_rows, logits_.data());
  return logits_;
}

const std::vector<float>& Engine::eval(Sequence& seq, std::span<const int32_t> tokens,
                                       bool all_logits) {
  const size_t step = static_cast<size_t>(std::max(1, seq.config.max_batch));
  if (tokens.size() <= step) {
    BatchPart part{&seq, tokens, all_logits};
    return forward(std::span(&part, 1));
  }
  all_logits_.clear();
  for (size_t i = 0; i < tokens.size(); i += step) {
    const size_t len = std::min(step, tokens.size() - i);
    BatchPart part{&seq, tokens.subspan(i, len), all_logits || i + len == tokens.size()};
    const auto& l = forward(std::span(&part, 1));
    if (all_logits) all_logits_.insert(all_logits_.end(), l.begin(), l.end());
    else if (i + len == tokens.size()) all_logits_ = l;
  }
  return all_logits_;
}

}  // namespace endless
