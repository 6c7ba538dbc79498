#include "common.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "convert/synth.h"

#include "util/error.h"

namespace endless::cli {

void add_model_options(CLI::App& app, ModelOptions& o, bool required) {
  auto* opt = app.add_option("-m,--model", o.model,
                             required ? "GGUF model file" : "GGUF model file (default: a built-in synthetic model)");
  opt->check(existing_file());
  if (required) opt->required();
  app.add_option("-t,--threads", o.threads, "Threads (default: all cores, at most 8)")
      ->check(CLI::Range(0, 1024));
}

void add_cache_options(CLI::App& app, CacheOptions& o) {
  app.add_option("--cache", o.policy, "KV-cache policy: full, window, sink, shift")
      ->check(CLI::IsMember(policy_names()));
  app.add_option("-c,--ctx-size", o.n_ctx, "Context size for full/shift (default: model's)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_option("--sink", o.n_sink, "Attention-sink tokens for --cache sink")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--window", o.window, "Tokens held by sink/window caches, sinks included")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("--keep", o.n_keep, "Tokens kept at the start by --cache shift")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_option("--cache-type", o.kv_type, "KV storage type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}));
  app.add_option("-b,--batch-size", o.batch, "Most tokens per forward pass")
      ->check(CLI::Range(1, 1 << 16));
}

std::string default_model_path() {
  // A small random-weight llama with a real SentencePiece-style vocabulary, so `endless run`
  // works on a fresh machine with nothing downloaded. Written once, then reused.
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path dir = cache && *cache ? std::filesystem::path(cache) / "endless"
                              : home && *home ? std::filesystem::path(home) / ".cache" / "endless"
                                              : std::filesystem::temp_directory_path() / "endless";
  std::filesystem::create_directories(dir);
  const auto path = dir / "default-synth-llama-128.gguf";
  if (!std::filesystem::exists(path)) {
    convert::SynthSpec spec;
    spec.dim = 128;
    spec.layers = 4;
    spec.heads = 4;
    spec.kv_heads = 2;
    spec.ff = 384;
    spec.vocab = 512;
    spec.ctx = 2048;
    spec.seed = 42;
    spec.name = "endless-default (random weights)";
    convert::write_synth_model(spec, path.string());
  }
  return path.string();
}

Loaded load(const ModelOptions& o) {
  Loaded l;
  const std::string path = o.model.empty() ? default_model_path() : o.model;
  if (o.model.empty())
    std::fprintf(stderr, "no model given (-m): using the built-in random-weight model %s\n", path.c_str());
  l.model = Model::load(path);
  l.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(l.model->file()));
  if (l.tokenizer->n_vocab() != l.model->config().n_vocab)
    fail(path, ": the tokenizer has ", l.tokenizer->n_vocab(), " tokens but the model's ",
         "embedding has ", l.model->config().n_vocab);
  int threads = o.threads;
  if (threads <= 0)
    threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 8);
  l.engine = std::make_unique<Engine>(l.model, threads);
  return l;
}

MemoryConfig memory_config(const CacheOptions& o, const ModelConfig& model) {
  MemoryConfig m;
  m.policy = o.policy;
  // Like llama.cpp, the default context is the model's, capped so a file claiming a huge one does
  // not allocate a huge cache.
  m.n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(model.ctx_train, 4096);
  m.n_sink = o.n_sink;
  m.window = o.window;
  m.n_keep = o.n_keep;
  m.kv_type = o.kv_type == "f32" ? TensorType::F32 : TensorType::F16;
  m.max_batch = o.batch;
  return m;
}

}  // namespace endless::cli
