#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "util/error.h"
#include "util/fp16.h"

// Every multiply-add is written out; the fast paths beside this reference match it exactly.
#pragma GCC optimize("fp-contract=off")

namespace endless {
namespace {

// The sums of squares of M rows of n (as ggml's rms_norm: squares rounded to float, summed in
// double, in order), the rows' chains side by side: the same additions in the same order, but M
// chains of dependent additions in flight instead of one.
template <int M>
void sums_of_squares(const float* x, int n, double* ss) {
  double s[M] = {};
  for (int i = 0; i < n; ++i)
    for (int t = 0; t < M; ++t) s[t] += static_cast<double>(x[t * n + i] * x[t * n + i]);
  for (int t = 0; t < M; ++t) ss[t] = s[t];
}

// ggml's rms_norm of each of `rows` rows of n: scale = 1 / sqrt(sum of squares / n + eps), then
// x * scale, times weight. Rows go through the sums up to eight at a time: one row's sum is a
// chain of n dependent double additions, and a batch of eight sessions' tokens, one after the
// other, spent 3% of each step here.
void rmsnorm_rows(float* out, const float* x, const float* weight, int n, int64_t rows, float eps) {
  constexpr int kRows = 8;
  double ss[kRows];
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    const int m = static_cast<int>(std::min<int64_t>(kRows, rows - r0));
    const float* xr = x + r0 * n;
    switch (m) {
      case 1: sums_of_squares<1>(xr, n, ss); break;
      case 2: sums_of_squares<2>(xr, n, ss); break;
      case 3: sums_of_squares<3>(xr, n, ss); break;
      case 4: sums_of_squares<4>(xr, n, ss); break;
      case 5: sums_of_squares<5>(xr, n, ss); break;
      case 6: sums_of_squares<6>(xr, n, ss); break;
      case 7: sums_of_squares<7>(xr, n, ss); break;
      default: sums_of_squares<8>(xr, n, ss); break;
    }
    for (int t = 0; t < m; ++t) {
      const float scale = 1.0f / std::sqrt(static_cast<float>(ss[t] / n) + eps);
      const float* xt = xr + int64_t{t} * n;
      float* ot = out + (r0 + t) * n;
      for (int i = 0; i < n; ++i) ot[i] = xt[i] * scale * weight[i];
    }
  }
}

template <typename T, typename A>
void grow(std::vector<T, A>& v, size_t n) {
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
  // sirllm's noise ceiling by default: the self-information of a uniform guess over the vocabulary.
  if (memory.policy == "sirllm" && seq->config.sir_max_nll < 0)
    seq->config.sir_max_nll = std::log(static_cast<double>(config().n_vocab));
  seq->policy = make_policy(seq->config);
  seq->policy->set_model(config().rope, config().n_layers, config().n_heads, config().n_kv_heads);
  seq->config.max_batch = std::min(seq->config.max_batch, seq->policy->batch_limit());
  seq->store =
      KVStore(config().n_layers, config().kv_dim(), seq->policy->capacity(), memory.kv_type, config().head_dim);
  return seq;
}

// Engine::matmul: src/model/matmul_parallel.cpp.

// Attention of the part's new tokens over the spans their policy gives, in one softmax across all
// spans. q holds the new tokens' un-rotated queries; out receives n_heads * head_dim values per
// token. The arithmetic follows llama.cpp's default CPU path so logits agree with it to rounding:
// with a half-precision cache the query is rounded to half for the dot product with the keys
// (ggml's vec_dot_type for F16), and the softmax weights are rounded to half before they weight
// the values; exp in the softmax is ggml's own (kernels::softmax_exp_row).
void Engine::attention(int layer, const BatchPart& part, const float* q, float* out) {
  if (reference_) attention_reference(layer, part, q, out);
  else attention_fast(layer, part, q, out);
}

void Engine::attention_reference(int layer, const BatchPart& part, const float* q, float* out) {
  const ModelConfig& c = config();
  const int n = static_cast<int>(part.tokens.size());
  const int group = c.n_heads / c.n_kv_heads;
  const int hd = c.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const KVStore& store = part.seq->store;
  const bool f16 = store.type() == TensorType::F16;
  const bool round_query = f16;
  const MemoryPolicy& policy = *part.seq->policy;
  const bool observe = policy.wants_attention();  // softmax weights reported to the policy
  auto to_half_and_back = [](float x) { return fp16_to_fp32(fp32_to_fp16(x)); };

  pool_.parallel_for(n, [&](int64_t begin, int64_t end) {
    std::vector<Span> spans;
    std::vector<float> qr(c.q_dim()), kf(c.kv_dim()), vf(c.kv_dim()), scores;
    for (int64_t i = begin; i < end; ++i) {
      policy.spans(layer, static_cast<int>(i), spans);
      int64_t n_keys = 0;
      for (const Span& span : spans) n_keys += span.end - span.begin;
      scores.resize(static_cast<size_t>(n_keys) * c.n_heads);  // [head][key]

      // Scores: each span rotates the query at its own position.
      int64_t j = 0;
      for (const Span& span : spans) {
        std::memcpy(qr.data(), q + i * c.q_dim(), c.q_dim() * sizeof(float));
        rope_.apply(qr.data(), c.n_heads, span.query_pos);
        if (round_query)
          for (float& x : qr) x = to_half_and_back(x);
        for (int64_t slot = span.begin; slot < span.end; ++slot, ++j) {
          store.read_key(layer, slot, kf.data());
          for (int h = 0; h < c.n_heads; ++h) {
            const float* qh = qr.data() + h * hd;
            const float* kh = kf.data() + (h / group) * hd;
            // The dot product in ggml's order (kernels::attention_dot, attention.h).
            const double dot = kernels::attention_dot(qh, kh, hd);
            scores[h * n_keys + j] = static_cast<float>(dot) * scale;
          }
        }
      }
      // Softmax per head.
      for (int h = 0; h < c.n_heads; ++h) {
        float* sh = scores.data() + h * n_keys;
        float mx = -INFINITY;
        for (int64_t k = 0; k < n_keys; ++k) mx = std::max(mx, sh[k]);
        // exp(s - max) as ggml's softmax computes it (its exp polynomial sixteen at a time, the
        // rest with expf; the sum in double), then scaled by the reciprocal of the sum.
        const double sum = kernels::softmax_exp_row(sh, sh, n_keys, mx);
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t k = 0; k < n_keys; ++k) sh[k] *= inv;
        if (observe) part.seq->policy->observe_attention(layer, static_cast<int>(i), h, sh, n_keys);
        if (f16)
          for (int64_t k = 0; k < n_keys; ++k) sh[k] = to_half_and_back(sh[k]);
      }
      // Weighted sum of the values.
      float* o = out + i * c.q_dim();
      std::fill(o, o + c.q_dim(), 0.0f);
      j = 0;
      for (const Span& span : spans) {
        for (int64_t slot = span.begin; slot < span.end; ++slot, ++j) {
          store.read_value(layer, slot, vf.data());
          for (int h = 0; h < c.n_heads; ++h) {
            const float p = scores[h * n_keys + j];
            const float* vh = vf.data() + (h / group) * hd;
            float* oh = o + h * hd;
            for (int d = 0; d < hd; ++d) oh[d] += p * vh[d];
          }
        }
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
  grow(row_part_, n);
  grow(key_pos_, n);

  const int half_rot = rope_.config().n_rot / 2;
  // Token embeddings; each sequence's policy makes room and places the new tokens.
  {
    int64_t row = 0;
    for (const auto& p : parts) {
      for (int32_t t : p.tokens) model_->embed(t, x_.data() + (row++) * c.dim);
    }
    row = 0;
    for (const auto& p : parts)
      for (size_t i = 0; i < p.tokens.size(); ++i) row_part_[row++] = &p;
    row = 0;
    for (const auto& p : parts) {
      p.seq->policy->observe_tokens(p.tokens.data(), static_cast<int>(p.tokens.size()));
      p.seq->policy->begin_batch(static_cast<int>(p.tokens.size()), p.seq->store,
                                 slots_.data() + row, key_pos_.data() + row);
      row += static_cast<int64_t>(p.tokens.size());
    }
    // Each new key's rotation angles, once for every layer.
    grow(key_angles_, static_cast<size_t>(n) * 2 * half_rot);
    for (int64_t t = 0; t < n; ++t) {
      float* a = key_angles_.data() + t * 2 * half_rot;
      rope_.angles(key_pos_[t], a, a + half_rot);
    }
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = model_->layer(l);

    // Attention block: x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
    for_rows(n, [&](int64_t b, int64_t e) {
      rmsnorm_rows(xb_.data() + b * c.dim, x_.data() + b * c.dim, L.attn_norm.data(), c.dim, e - b, c.rms_eps);
    });
    const Product qkv[] = {{&L.wq, q_.data()}, {&L.wk, k_.data()}, {&L.wv, v_.data()}};
    matmul_group(qkv, xb_.data(), n);
    if (c.qkv_bias) {
      for (int64_t t = 0; t < n; ++t) {
        for (int i = 0; i < c.q_dim(); ++i) q_[t * c.q_dim() + i] += L.bq[i];
        for (int i = 0; i < c.kv_dim(); ++i) k_[t * c.kv_dim() + i] += L.bk[i];
        for (int i = 0; i < c.kv_dim(); ++i) v_[t * c.kv_dim() + i] += L.bv[i];
      }
    }
    // Keys are rotated once, at the position the policy chose, and stored (each row in its own
    // slot, so the threads write apart).
    for_rows(n, [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        float* k = k_.data() + row * c.kv_dim();
        const float* a = key_angles_.data() + row * 2 * half_rot;
        rope_.rotate(k, c.n_kv_heads, a, a + half_rot);
        row_part_[row]->seq->store.write(l, slots_[row], k, v_.data() + row * c.kv_dim());
      }
    });
    {
      int64_t row = 0;
      for (const auto& p : parts) {
        p.seq->policy->before_attention(l, q_.data() + row * c.q_dim(), static_cast<int>(p.tokens.size()),
                                        p.seq->store);
        row += static_cast<int64_t>(p.tokens.size());
      }
      // Several parts with fewer tokens each than threads (several sequences decoding): one part
      // per thread at a time. Otherwise one part at a time, its tokens spread over the threads.
      bool side_by_side = !reference_ && parts.size() > 1 && pool_.size() > 1;
      for (const auto& p : parts) side_by_side = side_by_side && static_cast<int>(p.tokens.size()) < pool_.size();
      if (side_by_side) {
        attention_fast_parts(l, parts, q_.data(), att_.data());
      } else {
        row = 0;
        for (const auto& p : parts) {
          attention(l, p, q_.data() + row * c.q_dim(), att_.data() + row * c.q_dim());
          row += static_cast<int64_t>(p.tokens.size());
        }
      }
    }
    matmul(L.wo, att_.data(), n, xb_.data());
    for_rows(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b * c.dim; i < e * c.dim; ++i) x_[i] += xb_[i];
    });

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
    for_rows(rows, [&](int64_t b, int64_t e) {
      rmsnorm_rows(xb_.data() + b * c.dim, x_.data() + b * c.dim, L.ffn_norm.data(), c.dim, e - b, c.rms_eps);
    });
    const Product gate_up[] = {{&L.gate, ffa_.data()}, {&L.up, ffb_.data()}};
    matmul_group(gate_up, xb_.data(), rows);
    for_rows(rows, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) kernels::silu_row(ffa_.data() + t * c.ff, ffa_.data() + t * c.ff, c.ff);
      for (int64_t i = b * c.ff; i < e * c.ff; ++i) ffa_[i] *= ffb_[i];
    });
    matmul(L.down, ffa_.data(), rows, xb_.data());
    for_rows(rows, [&](int64_t b, int64_t e) {
      for (int64_t i = b * c.dim; i < e * c.dim; ++i) x_[i] += xb_[i];
    });
  }

  for (const auto& p : parts) p.seq->policy->end_batch(static_cast<int>(p.tokens.size()));

  // Final norm and output projection of the rows whose logits are wanted (the first n_out_rows).
  rmsnorm_rows(xb_.data(), x_.data(), model_->output_norm().data(), c.dim, n_out_rows, c.rms_eps);
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
    BatchPart part{&seq, tokens.subspan(i, len), all_logits};  // without all_logits: the last token's row
    const auto& l = forward(std::span(&part, 1));
    if (all_logits) all_logits_.insert(all_logits_.end(), l.begin(), l.end());
    else if (i + len == tokens.size()) all_logits_ = l;
  }
  return all_logits_;
}

}  // namespace endless
