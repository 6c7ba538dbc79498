// Writes small random-weight GGUF models for tests that need a model but no downloaded data.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/kernels.h"

namespace endless::testing {

struct TinyModelSpec {
  std::string arch = "llama";
  int dim = 64, layers = 2, heads = 4, kv_heads = 2, ff = 96, vocab = 128, ctx = 256;
  TensorType type = TensorType::F32;
  uint32_t seed = 1;
  bool tied_output = false;
  // Store the weights as F32 after a round trip through this type: the same values a model of
  // that type holds, computed in float (isolates the error of the quantized matmul itself).
  TensorType roundtrip = TensorType::F32;
  // When not F32: attn_v and ffn_up take this type instead of `type` (and of `roundtrip`), as
  // llama-quantize's _M mixes give some tensors a wider type.
  TensorType mixed = TensorType::F32;
};

inline void write_tiny_model(const TinyModelSpec& s, const std::string& path) {
  gguf::Writer w;
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::string a = s.arch;
  w.set_string("general.architecture", a);
  w.set_u32(a + ".context_length", s.ctx);
  w.set_u32(a + ".embedding_length", s.dim);
  w.set_u32(a + ".block_count", s.layers);
  w.set_u32(a + ".feed_forward_length", s.ff);
  w.set_u32(a + ".attention.head_count", s.heads);
  w.set_u32(a + ".attention.head_count_kv", s.kv_heads);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32(a + ".rope.freq_base", 10000.0f);
  w.set_string("tokenizer.ggml.model", "llama");
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int i = 0; i < s.vocab; ++i) {
    tokens.push_back(i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : "\xe2\x96\x81t" + std::to_string(i));
    scores.push_back(-static_cast<float>(i));
    types.push_back(i == 0 ? 2 : i < 3 ? 3 : 1);
  }
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_f32s("tokenizer.ggml.scores", scores);
  w.set_i32s("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);

  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, bool quantize) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) x = normal(rng) * scale;
    if (shape.size() == 1 && scale == 0) std::fill(v.begin(), v.end(), 1.0f);
    const bool mixed = s.mixed != TensorType::F32 &&
                       (name.ends_with("attn_v.weight") || name.ends_with("ffn_up.weight"));
    const TensorType roundtrip = mixed && s.roundtrip != TensorType::F32 ? s.mixed : s.roundtrip;
    if (quantize && roundtrip != TensorType::F32) {
      std::vector<uint8_t> q(row_size(roundtrip, n));
      kernels::quantize_weights_row(roundtrip, v.data(), q.data(), n);
      kernels::dequantize_row(roundtrip, q.data(), v.data(), n);
    }
    const TensorType t = !quantize ? TensorType::F32 : mixed && s.type != TensorType::F32 ? s.mixed : s.type;
    std::vector<uint8_t> data(row_size(t, n));
    kernels::quantize_weights_row(t, v.data(), data.data(), n);
    w.add_tensor(name, t, shape, data.data(), data.size());
  };
  const int hd = s.dim / s.heads;
  add("token_embd.weight", {s.dim, s.vocab}, 1.0f, true);
  add("output_norm.weight", {s.dim}, 0, false);
  if (!s.tied_output) add("output.weight", {s.dim, s.vocab}, 2.0f / std::sqrt(float(s.dim)), true);
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const float sc = 1.5f / std::sqrt(float(s.dim));
    add(p + "attn_norm.weight", {s.dim}, 0, false);
    add(p + "ffn_norm.weight", {s.dim}, 0, false);
    add(p + "attn_q.weight", {s.dim, s.heads * hd}, sc, true);
    add(p + "attn_k.weight", {s.dim, s.kv_heads * hd}, sc, true);
    add(p + "attn_v.weight", {s.dim, s.kv_heads * hd}, sc, true);
    add(p + "attn_output.weight", {s.heads * hd, s.dim}, sc, true);
    add(p + "ffn_gate.weight", {s.dim, s.ff}, sc, true);
    add(p + "ffn_up.weight", {s.dim, s.ff}, sc, true);
    add(p + "ffn_down.weight", {s.ff, s.dim}, 1.5f / std::sqrt(float(s.ff)), true);
    if (s.arch == "qwen2") {
      add(p + "attn_q.bias", {s.heads * hd}, 0.5f, false);
      add(p + "attn_k.bias", {s.kv_heads * hd}, 0.5f, false);
      add(p + "attn_v.bias", {s.kv_heads * hd}, 0.5f, false);
    }
  }
  w.write(path);
}

}  // namespace endless::testing
