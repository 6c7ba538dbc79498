// A model's hyper-parameters, read entirely from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/gguf.h"
#include "memory/rope.h"

namespace endless {

struct ModelConfig {
  std::string arch;        // llama | mistral | qwen2
  std::string name;        // general.name, if any
  int64_t n_vocab = 0;
  int dim = 0;             // embedding length
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int ff = 0;              // feed-forward length
  int64_t ctx_train = 0;   // context length the model was trained with
  float rms_eps = 1e-5f;
  RopeConfig rope;
  bool qkv_bias = false;   // qwen2

  int kv_dim() const { return n_kv_heads * head_dim; }
  int q_dim() const { return n_heads * head_dim; }

  // Reads and validates the config; Error naming the key for anything missing or inconsistent.
  static ModelConfig from_gguf(const gguf::File& f);
};

}  // namespace endless
