#include "model/model.h"

#include <cstdlib>
#include <cstring>
#include <map>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "util/aligned.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace endless {
namespace {

const gguf::TensorInfo& find_tensor(const gguf::File& f, const std::string& name) {
  const gguf::TensorInfo* t = f.tensor(name);
  if (t == nullptr) fail(f.path(), ": tensor '", name, "' is missing");
  return *t;
}

Weight matrix(const gguf::File& f, const gguf::TensorInfo& t, int64_t n_in, int64_t n_out) {
  if (t.shape.size() != 2 || t.shape[0] != n_in || t.shape[1] != n_out)
    fail(f.path(), ": tensor '", t.name, "' has shape [", t.shape[0], t.shape.size() > 1 ? cat(", ", t.shape[1]) : "",
         t.shape.size() > 2 ? ", ..." : "", "], expected [", n_in, ", ", n_out, "]");
  if (!kernels::can_matmul(t.type))
    fail(f.path(), ": tensor '", t.name, "' has type ", type_name(t.type),
         ", which endless cannot compute with yet");
  return Weight{t.type, t.data, n_in, n_out};
}

Weight matrix(const gguf::File& f, const std::string& name, int64_t n_in, int64_t n_out) {
  return matrix(f, find_tensor(f, name), n_in, n_out);
}

std::vector<float> vector_of(const gguf::File& f, const std::string& name, int64_t n) {
  const auto& t = find_tensor(f, name);
  if (t.shape.size() != 1 || t.shape[0] != n)
    fail(f.path(), ": tensor '", name, "' should be a vector of ", n, " elements");
  if (!kernels::can_dequantize(t.type))
    fail(f.path(), ": tensor '", name, "' has unsupported type ", type_name(t.type));
  std::vector<float> out(n);
  kernels::dequantize_row(t.type, t.data, out.data(), n);
  return out;
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::string& path, Residency residency) {
  std::shared_ptr<Model> m(new Model(gguf::File::open(path, residency)));
  const gguf::File& f = m->file_;
  ModelConfig& c = m->config_;
  c = ModelConfig::from_gguf(f);

  const auto& embd = find_tensor(f, "token_embd.weight");
  if (embd.shape.size() != 2 || embd.shape[0] != c.dim)
    fail(path, ": token_embd.weight should have rows of ", c.dim, " elements");
  c.n_vocab = embd.shape[1];
  if (!kernels::can_dequantize(embd.type))
    fail(path, ": token_embd.weight has unsupported type ", type_name(embd.type));
  m->token_embd_ = Weight{embd.type, embd.data, c.dim, c.n_vocab};
  m->output_norm_ = vector_of(f, "output_norm.weight", c.dim);
  if (const auto* out = f.tensor("output.weight"))
    m->output_ = matrix(f, *out, c.dim, c.n_vocab);
  else
    m->output_ = matrix(f, embd, c.dim, c.n_vocab);  // tied embeddings

  m->layers_.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = cat("blk.", i, ".");
    LayerWeights& L = m->layers_[i];
    L.attn_norm = vector_of(f, p + "attn_norm.weight", c.dim);
    L.ffn_norm = vector_of(f, p + "ffn_norm.weight", c.dim);
    L.wq = matrix(f, p + "attn_q.weight", c.dim, c.q_dim());
    L.wk = matrix(f, p + "attn_k.weight", c.dim, c.kv_dim());
    L.wv = matrix(f, p + "attn_v.weight", c.dim, c.kv_dim());
    L.wo = matrix(f, p + "attn_output.weight", c.q_dim(), c.dim);
    L.gate = matrix(f, p + "ffn_gate.weight", c.dim, c.ff);
    L.up = matrix(f, p + "ffn_up.weight", c.dim, c.ff);
    L.down = matrix(f, p + "ffn_down.weight", c.ff, c.dim);
    if (c.qkv_bias) {
      L.bq = vector_of(f, p + "attn_q.bias", c.q_dim());
      L.bk = vector_of(f, p + "attn_k.bias", c.kv_dim());
      L.bv = vector_of(f, p + "attn_v.bias", c.kv_dim());
    }
  }

  m->pack_matrices();

  std::map<TensorType, int64_t> by_type;
  for (const auto& t : f.tensors()) {
    m->n_params_ += t.n_elements();
    if (t.shape.size() == 2) by_type[t.type] += t.n_elements();
  }
  int64_t best = -1;
  for (const auto& [type, n] : by_type)
    if (n > best) {
      best = n;
      m->main_type_ = type;
    }
  return m;
}

// Matrices that have a layout of their own for this CPU's tiles are rearranged once, here, into
// one block of memory (2 MiB pages where the system gives them); so are copied, as they are, the
// float matrices the tiles would read from addresses that split their loads across cache lines
// (kernels::wants_aligned_copy). Their bytes in the file are not read again, so they leave
// memory, except the embedding table's.
void Model::pack_matrices() {
  std::vector<Weight*> matrices{&output_};
  for (LayerWeights& L : layers_)
    for (Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) matrices.push_back(w);
  auto bytes_of = [](const Weight& w) -> std::pair<size_t, bool> {  // bytes, and whether it is a copy
    if (const size_t n = kernels::packed_weights_size(w.type, w.n_in, w.n_out)) return {n, false};
    if (kernels::wants_aligned_copy(w.type, w.data)) return {row_size(w.type, w.n_in) * static_cast<size_t>(w.n_out), true};
    return {0, false};
  };
  size_t total = 0;
  for (const Weight* w : matrices) total += (bytes_of(*w).first + 63) / 64 * 64;
  if (total == 0) return;
  total = round_to_huge_pages(total);
  packed_.reset(static_cast<uint8_t*>(allocate_huge_pages(total)));
  if (!packed_) fail(file_.path(), ": cannot allocate ", total >> 20, " MiB for the packed weights");
  packed_bytes_ = total;
  size_t at = 0;
  for (Weight* w : matrices) {
    const auto [n, copy] = bytes_of(*w);
    if (n == 0) continue;
    const void* file_bytes = w->data;
    if (copy) {
      std::memcpy(packed_.get() + at, w->data, n);
      w->data = packed_.get() + at;
    } else {
      kernels::pack_weights(w->type, w->data, w->n_in, w->n_out, packed_.get() + at);
      w->packed = packed_.get() + at;
    }
    if (file_bytes != token_embd_.data) file_.drop(static_cast<const uint8_t*>(file_bytes), n);
    at += (n + 63) / 64 * 64;
  }
}

void Model::lock_in_memory() const {
  file_.lock_in_memory();
  if (packed_) lock_pages(packed_.get(), packed_bytes_, cat("the packed weights of '", file_.path(), "'"));
}

void Model::embed(int32_t token, float* out) const {
  if (token < 0 || token >= config_.n_vocab)
    fail("token id ", token, " is outside the vocabulary (0..", config_.n_vocab - 1, ")");
  const auto* row = static_cast<const uint8_t*>(token_embd_.data) +
                    static_cast<size_t>(token) * row_size(token_embd_.type, config_.dim);
  kernels::dequantize_row(token_embd_.type, row, out, config_.dim);
}

}  // namespace endless
