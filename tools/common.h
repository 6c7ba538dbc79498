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
  bool no_mmap = false;  // read the weights into memory instead of mapping the file
};

// The cache flags: a MemoryConfig the options write into (its defaults are the flags' defaults),
// plus the three that need the model or its tokenizer to become config values.
struct CacheOptions {
  MemoryConfig memory;
  int64_t n_ctx = 0;            // 0: the model's training context (at most 4096)
  std::string kv_type = "f16";  // f16 | f32
  std::string turn_marker;      // sirllm: text; tokenized with the model's tokenizer
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
