// Options and set-up shared by the subcommands that run a model.
#pragma once

#include <memory>
#include <string>

#include "cli.h"
#include "memory/policy.h"
#include "model/forward.h"
#include "tokenizer/tokenizer.h"

namespace endless::cli {

struct ModelOptions {
  std::string model;
  int threads = 0;  // 0: all cores (at most 8)
  bool mlock = false;  // pin the weights in RAM
};

struct CacheOptions {
  std::string policy = "full";
  int64_t n_ctx = 0;  // 0: the model's training context
  int n_sink = 4;
  int64_t window = 512;
  int64_t n_keep = 0;
  std::string kv_type = "f16";
  int batch = 512;
  // sirllm
  int64_t sir_keep = -1;
  double sir_decay = 0.9;
  int64_t sir_decay_every = 0;
  std::string turn_marker;  // text; tokenized with the model's tokenizer
  // infllm
  int block_size = 128;
  int block_reps = 4;
  int block_topk = 16;
  int mem_skip_layers = 1;
  std::string mem_score = "keys";
  int mem_key_window = 32;
  int mem_retrieve_every = 1;
  int64_t mem_distance = 0;
  bool mem_compact = false;
  int64_t mem_ram_mib = 1024;
  std::string memory_dir;
  int mem_hot = 256;
};

// With required = false, a missing -m means the embedded default: a small random-weight model
// written on first use (see default_model_path).
void add_model_options(CLI::App& app, ModelOptions& o, bool required = true);
std::string default_model_path();
void add_cache_options(CLI::App& app, CacheOptions& o);
// The options of the sirllm and infllm policies (part of add_cache_options).
void add_memory_policy_options(CLI::App& app, CacheOptions& o);

// Loads a model and its tokenizer.
struct Loaded {
  std::shared_ptr<const Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
};
Loaded load(const ModelOptions& o);
// The tokenizer turns --turn-marker into ids; without one, a marker is an error.
MemoryConfig memory_config(const CacheOptions& o, const ModelConfig& model, const Tokenizer* tokenizer = nullptr);

}  // namespace endless::cli
