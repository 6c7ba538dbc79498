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
  app.add_flag("--mlock", o.mlock, "Keep the weights in RAM (mlock): the system never pages them out");
  app.add_flag("--no-mmap", o.no_mmap,
               "Read the weights into memory (2 MiB pages where the system allows) instead of mapping the file");
}

void add_cache_options(CLI::App& app, CacheOptions& o) {
  app.add_option("--cache", o.memory.policy, "KV-cache policy: full, window, sink, shift, sirllm, infllm")
      ->check(CLI::IsMember(policy_names()));
  app.add_option("-c,--ctx-size", o.n_ctx, "Context size for full/shift (default: model's)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_option("--sink", o.memory.n_sink, "Attention-sink tokens for --cache sink")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--window", o.memory.window, "Tokens held by sink/window caches, sinks included")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("--keep", o.memory.n_keep, "Tokens kept at the start by --cache shift")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_option("--cache-type", o.kv_type, "KV storage type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}));
  app.add_option("-b,--batch-size", o.memory.max_batch, "Most tokens per forward pass")
      ->check(CLI::Range(1, 1 << 16));
  add_memory_policy_options(app, o);
}

void add_memory_policy_options(CLI::App& app, CacheOptions& o) {
  app.add_option("--sir-keep", o.memory.sir_keep, "sirllm: tokens kept for their self-information (default: a quarter of the window)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_option("--sir-decay", o.memory.sir_decay, "sirllm: score decay at each turn boundary")->check(CLI::Range(0.0, 1.0));
  app.add_option("--sir-decay-every", o.memory.sir_decay_every, "sirllm: also end a turn (decay) every this many tokens (0: never)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--turn-marker", o.turn_marker, "sirllm: text that ends a turn (its tokens)");
  app.add_option("--sir-max-nll", o.memory.sir_max_nll,
                 "sirllm: tokens with a larger NLL score 0 as noise (default: log of the vocabulary size; 0: no ceiling)")
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--block-size", o.memory.block_size, "infllm: tokens per memory block")->check(CLI::Range(1, 65536));
  app.add_option("--block-reps", o.memory.block_reps, "infllm: most-attended tokens averaged into a block's representative")
      ->check(CLI::Range(1, 65536));
  app.add_option("--block-topk", o.memory.top_k, "infllm: blocks retrieved per layer and chunk")->check(CLI::Range(0, 4096));
  app.add_option("--mem-skip-layers", o.memory.mem_skip_layers, "infllm: first layers that retrieve nothing (sinks and window only)")
      ->check(CLI::Range(0, 1 << 16));
  // query: the keys-only settings, on by default, go off (options after this one, given
  // explicitly, still set them, and the policy then refuses the mix).
  app.add_option_function<std::string>(
         "--mem-score",
         [&o](const std::string& s) {
           if (s == "query") o.memory.use_query_scoring();
           o.memory.mem_score = s;
         },
         "infllm: block scoring: keys (recent mean key vs block mean key, cosine; the default) or query "
         "(InfLLM: mean query . representative; turns the keys-only settings off)")
      ->check(CLI::IsMember({"keys", "query"}));
  app.add_option("--mem-key-window", o.memory.mem_key_window, "infllm: recent tokens whose mean key scores blocks (--mem-score keys)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--mem-key-halflife", o.memory.mem_key_halflife,
                 "infllm: recent keys weigh 2^(-age/this) in the mean that scores blocks (0: flat mean over --mem-key-window)")
      ->check(CLI::Range(0.0, 1e9));
  app.add_flag("--mem-key-whiten,!--no-mem-key-whiten", o.memory.mem_key_whiten,
               "infllm: scale each key dimension by 1/its standard deviation over the blocks scored before the cosines (--mem-score keys; on by default)");
  app.add_option("--mem-key-parts", o.memory.mem_key_parts,
                 "infllm: mean keys per block (--mem-score keys); a block scores as its best part")
      ->check(CLI::Range(1, 65536));
  app.add_flag("--mem-consensus,!--no-mem-consensus", o.memory.mem_consensus,
               "infllm: every retrieving layer takes the blocks chosen by the sum of their scores (--mem-score keys; on by default)");
  app.add_option("--mem-consensus-from", o.memory.mem_consensus_from,
                 "infllm: with --mem-consensus, sum the scores of the layers from this one (-1: the first retrieving layer)")
      ->check(CLI::Range(-1, 1 << 16));
  app.add_option("--mem-retrieve-every", o.memory.mem_retrieve_every,
                 "infllm: score blocks again only every this many tokens (keeps the last choice between)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--mem-index-group", o.memory.mem_index_group,
                 "infllm: blocks per group of the two-level block index (groups scored first, then their blocks)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--mem-index-beam", o.memory.mem_index_beam, "infllm: best groups whose blocks are scored one by one")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--mem-distance", o.memory.mem_distance, "infllm: distance of retrieved tokens from the query (0: the window's)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_flag("--mem-compact", o.memory.mem_compact, "infllm: retrieved blocks at consecutive positions before the window");
  app.add_option("--mem-ram", o.memory.mem_ram_mib, "infllm: MiB of blocks held in RAM before spilling to --memory-dir")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--memory-dir", o.memory.memory_dir, "infllm: directory for blocks beyond --mem-ram (default: forget the oldest)");
  app.add_option("--mem-hot", o.memory.mem_hot_blocks, "infllm: block-layers read back from disk kept in RAM")->check(CLI::Range(1, 1 << 20));
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
  l.model = Model::load(path, o.no_mmap ? Residency::read : Residency::mapped);
  if (o.mlock) l.model->lock_in_memory();
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

MemoryConfig memory_config(const CacheOptions& o, const ModelConfig& model, const Tokenizer* tokenizer) {
  MemoryConfig m = o.memory;
  // Like llama.cpp, the default context is the model's, capped so a file claiming a huge one does
  // not allocate a huge cache.
  m.n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(model.ctx_train, 4096);
  m.kv_type = o.kv_type == "f32" ? TensorType::F32 : TensorType::F16;
  if (!o.turn_marker.empty()) {
    if (tokenizer == nullptr) fail("--turn-marker is not supported here");
    m.turn_marker = tokenizer->encode(o.turn_marker, /*add_special=*/false);
    if (m.turn_marker.empty()) fail("--turn-marker '", o.turn_marker, "' has no tokens");
  }
  return m;
}

}  // namespace endless::cli
