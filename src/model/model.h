// A loaded model: its config and its weights, used in place from the memory-mapped GGUF file.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/config.h"

namespace endless {

// A 2-D weight matrix: n_out rows of n_in elements of `type`, straight from the file.
struct Weight {
  TensorType type = TensorType::F32;
  const void* data = nullptr;
  int64_t n_in = 0;
  int64_t n_out = 0;
  // The same matrix rearranged for this CPU's tiles (kernels::pack_weights), or null.
  const void* packed = nullptr;
  bool present() const { return data != nullptr; }
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // small vectors, kept as floats
  std::vector<float> bq, bk, bv;           // qwen2 only
  Weight wq, wk, wv, wo;
  Weight gate, up, down;
};

class Model {
 public:
  // Maps the file and checks every tensor the architecture needs (names, shapes, types).
  static std::shared_ptr<const Model> load(const std::string& path, Residency residency = Residency::mapped);

  const ModelConfig& config() const { return config_; }
  const gguf::File& file() const { return file_; }
  const Weight& token_embd() const { return token_embd_; }
  const Weight& output() const { return output_; }  // token_embd when the output is tied
  const std::vector<float>& output_norm() const { return output_norm_; }
  const LayerWeights& layer(int i) const { return layers_[i]; }
  // Number of parameters and the most common weight type, for reports.
  int64_t n_params() const { return n_params_; }
  TensorType main_type() const { return main_type_; }

  // Pins the weights in RAM: the file's pages still in use and the packed matrices
  // (gguf::File::lock_in_memory). Throws Error with the reason.
  void lock_in_memory() const;

  // Expands the embedding row of a token into floats (dim of them).
  void embed(int32_t token, float* out) const;

 private:
  explicit Model(gguf::File file) : file_(std::move(file)) {}
  void pack_matrices();
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  gguf::File file_;
  std::unique_ptr<uint8_t, Free> packed_;  // every packed matrix, one after the other
  size_t packed_bytes_ = 0;
  ModelConfig config_;
  Weight token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  int64_t n_params_ = 0;
  TensorType main_type_ = TensorType::F32;
};

}  // namespace endless
