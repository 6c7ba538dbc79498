#include "common.h"

#include <algorithm>
#include <thread>

#include "util/error.h"

namespace endless::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model, "GGUF model file")->required()->check(existing_file());
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

Loaded load(const ModelOptions& o) {
  Loaded l;
  l.model = Model::load(o.model);
  l.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(l.model->file()));
  if (l.tokenizer->n_vocab() != l.model->config().n_vocab)
    fail(o.model, ": the tokenizer has ", l.tokenizer->n_vocab(), " tokens but the model's ",
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
  m.n_ctx = o.n_ctx > 0 ? o.n_ctx : model.ctx_train;
  m.n_sink = o.n_sink;
  m.window = o.window;
  m.n_keep = o.n_keep;
  m.kv_type = o.kv_type == "f32" ? TensorType::F32 : TensorType::F16;
  m.max_batch = o.batch;
  return m;
}

}  // namespace endless::cli
