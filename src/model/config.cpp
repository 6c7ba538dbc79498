#include "model/config.h"

#include "util/error.h"

namespace endless {
namespace {

int64_t require_int(const gguf::File& f, const std::string& key) {
  const auto v = f.get_int(key);
  if (!v) fail(f.path(), ": missing metadata '", key, "'");
  return *v;
}

int64_t bounded(const gguf::File& f, const std::string& key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) fail(f.path(), ": metadata '", key, "' = ", v, " is out of range [", lo, ", ", hi, "]");
  return v;
}

}  // namespace

ModelConfig ModelConfig::from_gguf(const gguf::File& f) {
  ModelConfig c;
  const auto arch = f.get_string("general.architecture");
  if (!arch) fail(f.path(), ": missing metadata 'general.architecture'");
  c.arch = std::string(*arch);
  if (c.arch != "llama" && c.arch != "mistral" && c.arch != "qwen2")
    fail(f.path(), ": architecture '", c.arch, "' is not supported (endless runs llama, mistral, qwen2)");
  if (auto n = f.get_string("general.name")) c.name = std::string(*n);
  const std::string p = c.arch + ".";

  c.dim = static_cast<int>(bounded(f, p + "embedding_length", require_int(f, p + "embedding_length"), 1, 1 << 16));
  c.n_layers = static_cast<int>(bounded(f, p + "block_count", require_int(f, p + "block_count"), 1, 1024));
  c.n_heads = static_cast<int>(bounded(f, p + "attention.head_count", require_int(f, p + "attention.head_count"), 1, 1024));
  c.n_kv_heads = static_cast<int>(bounded(f, p + "attention.head_count_kv",
                                          f.get_int(p + "attention.head_count_kv").value_or(c.n_heads), 1, c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    fail(f.path(), ": head_count ", c.n_heads, " is not a multiple of head_count_kv ", c.n_kv_heads);
  c.ff = static_cast<int>(bounded(f, p + "feed_forward_length", require_int(f, p + "feed_forward_length"), 1, 1 << 20));
  c.head_dim = static_cast<int>(bounded(f, p + "attention.key_length",
                                        f.get_int(p + "attention.key_length").value_or(c.dim / c.n_heads), 1, 4096));
  if (c.head_dim % 2 != 0) fail(f.path(), ": head dimension ", c.head_dim, " must be even");
  c.ctx_train = bounded(f, p + "context_length", f.get_int(p + "context_length").value_or(2048), 1, int64_t{1} << 32);
  c.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  if (!(c.rms_eps > 0 && c.rms_eps < 1)) fail(f.path(), ": layer_norm_rms_epsilon must be in (0, 1)");

  c.rope.head_dim = c.head_dim;
  c.rope.n_rot = static_cast<int>(bounded(f, p + "rope.dimension_count",
                                          f.get_int(p + "rope.dimension_count").value_or(c.head_dim), 2, c.head_dim));
  if (c.rope.n_rot % 2 != 0) fail(f.path(), ": rope.dimension_count must be even");
  c.rope.freq_base = f.get_float(p + "rope.freq_base").value_or(10000.0);
  if (!(c.rope.freq_base > 1)) fail(f.path(), ": rope.freq_base must be greater than 1");
  const auto scaling = f.get_string(p + "rope.scaling.type");
  if (scaling && *scaling == "linear") {
    const double factor = f.get_float(p + "rope.scaling.factor").value_or(1.0);
    if (!(factor > 0)) fail(f.path(), ": rope.scaling.factor must be positive");
    c.rope.freq_scale = 1.0 / factor;
  } else if (scaling && *scaling != "none") {
    fail(f.path(), ": rope scaling '", *scaling, "' is not supported (none, linear)");
  } else if (auto factor = f.get_float(p + "rope.scale_linear")) {
    if (!(*factor > 0)) fail(f.path(), ": rope.scale_linear must be positive");
    c.rope.freq_scale = 1.0 / *factor;
  }
  // llama.cpp rotates adjacent pairs for llama/mistral and split halves (NeoX style) for qwen2.
  c.rope.neox = c.arch == "qwen2";
  c.qkv_bias = c.arch == "qwen2";
  return c;
}

}  // namespace endless
