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
};

struct CacheOptions {
  std::string policy = "full";
  int64_t n_ctx = 0;  // 0: the model's training context
  int n_sink = 4;
  int64_t window = 512;
  int64_t n_keep = 0;
  std::string kv_type = "f16";
  int batch = 512;
};

// With required = false, a missing -m means the embedded default: a small random-weight model
// written on first use (see default_model_path).
void add_model_options(CLI::App& app, ModelOptions& o, bool required = true);
std::string default_model_path();
void add_cache_options(CLI::App& app, CacheOptions& o);

// Loads a model and its tokenizer.
struct Loaded {
  std::shared_ptr<const Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
};
Loaded load(const ModelOptions& o);
MemoryConfig memory_config(const CacheOptions& o, const ModelConfig& model);

}  // namespace endless::cli
