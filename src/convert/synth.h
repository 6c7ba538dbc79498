// Random-weight models of any shape and weight type, for tests and benchmarks that need a model
// of a given size without downloading one.
//
// The weights are drawn so that the model's outputs are sharp rather than near-uniform (numeric
// errors then change the argmax and show): token embeddings ~ N(0, 1); projections ~ N(0, 1/fan_in)
// (standard deviation 1/sqrt(fan_in)); the output projection ~ N(0, 3/sqrt(dim)), which gives
// logits of standard deviation about 3; RMS-norm weights ~ N(1, 0.1); qwen2's Q/K/V biases
// ~ N(0, 0.1). This is the recipe of ../shared/models/synth/*.gguf.
//
// Weight types follow `llama-quantize --pure`: every 2-D weight, token_embd and output included,
// takes the requested type; 1-D tensors (norms, biases) stay F32.
//
// Each tensor's values depend only on the seed, the tensor's name and its shape, not on the
// number of threads drawing them: a model with more layers shares its first layers with a smaller
// one, and a quantized model holds exactly the F32 model's values, quantized. The random numbers
// come from mt19937_64, whose sequence the C++ standard fixes, through our own normal transform
// (std::normal_distribution differs between standard libraries).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace endless::convert {

struct SynthSpec {
  std::string arch = "llama";  // llama | qwen2 | mistral
  int64_t dim = 256;
  int64_t layers = 4;
  int64_t heads = 8;
  int64_t kv_heads = 4;
  int64_t ff = 768;
  int64_t vocab = 512;
  int64_t ctx = 2048;  // <arch>.context_length
  TensorType type = TensorType::F32;
  uint64_t seed = 1;
  bool tied_output = false;  // leave output.weight out: the model reuses token_embd
  std::string name;          // general.name; empty means "synthetic-<arch>-<dim>"
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  int threads = 0;  // threads drawing the weights; 0 means one per core (at most 16)

  int64_t head_dim() const { return dim / heads; }
  // Throws Error naming the first field that is out of range or inconsistent.
  void validate() const;
};

// The weight types a synthetic model can have (what kernels can quantize, less activation-only
// layouts), in ggml's numbering order.
std::vector<TensorType> synth_weight_types();

// llama.cpp's general.file_type (llama_ftype) for a model whose weights are all of type t, as
// llama-quantize records it ("Q4_K" is its alias for Q4_K_M, and so on).
uint32_t llama_file_type(TensorType t);

// A SentencePiece-style vocabulary for `tokenizer.ggml.model = "llama"` with n tokens: <unk>,
// <s>, </s>, the 256 byte-fallback tokens <0x00>..<0xFF>, single characters, then frequent English
// pieces (U+2581 marks a leading space). Every piece's one-character-shorter prefix comes before
// it, so the SentencePiece merge procedure can reach every piece. n must be at least 259.
struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // convert::TokenKind values
};
SynthVocab synth_vocab(int64_t n);

// The GGUF image of a synthetic model.
gguf::Writer synth_model(const SynthSpec& spec);
// Writes it to `path` (through a temporary file renamed into place).
void write_synth_model(const SynthSpec& spec, const std::string& path);

}  // namespace endless::convert
