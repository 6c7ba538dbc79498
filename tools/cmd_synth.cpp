// `endless synth`: writes a random-weight model of any shape and weight type, for tests and
// benchmarks (see src/convert/synth.h for how the weights are drawn).
#include <cstdio>

#include "cli.h"
#include "convert/synth.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct SynthOptions {
  convert::SynthSpec spec;
  std::string type = "F32";
  std::string output;
};

int run_synth(SynthOptions& o) {
  const auto type = tensor_type_from_name(o.type);
  if (!type) fail("unknown weight type '", o.type, "'");
  o.spec.type = *type;
  convert::write_synth_model(o.spec, o.output);
  const auto& s = o.spec;
  std::printf("wrote %s: %s, dim %lld, %lld layers, %lld/%lld heads, ff %lld, vocab %lld, %s, seed %llu\n",
              o.output.c_str(), s.arch.c_str(), static_cast<long long>(s.dim),
              static_cast<long long>(s.layers), static_cast<long long>(s.heads),
              static_cast<long long>(s.kv_heads), static_cast<long long>(s.ff),
              static_cast<long long>(s.vocab), std::string(type_name(s.type)).c_str(),
              static_cast<unsigned long long>(s.seed));
  return 0;
}

Registration reg(
    "synth", "Write a random-weight model of a given shape and weight type",
    [](CLI::App& sub) {
      auto o = std::make_shared<SynthOptions>();
      auto& s = o->spec;
      std::string types;
      for (TensorType t : convert::synth_weight_types())
        types += std::string(types.empty() ? "" : ", ") + std::string(type_name(t));
      sub.footer("Weights are random but give sharp logits, so numeric errors show. 2-D weights "
                 "(token_embd and output included) take --type, as with llama-quantize --pure; "
                 "norms and biases stay F32. The vocabulary is a SentencePiece-style `llama` one "
                 "with byte fallback, so any text can be tokenized. The same seed always gives "
                 "the same model.");
      sub.add_option("--arch", s.arch, "Architecture")
          ->check(CLI::IsMember({"llama", "qwen2", "mistral"}))
          ->capture_default_str();
      sub.add_option("--dim", s.dim, "Embedding length")->capture_default_str();
      sub.add_option("--layers", s.layers, "Number of blocks")->capture_default_str();
      sub.add_option("--heads", s.heads, "Attention heads")->capture_default_str();
      sub.add_option("--kv-heads", s.kv_heads, "Key/value heads")->capture_default_str();
      sub.add_option("--ff", s.ff, "Feed-forward length")->capture_default_str();
      sub.add_option("--vocab", s.vocab, "Vocabulary size (at least 259)")->capture_default_str();
      sub.add_option("--type", o->type, "Weight type: " + types)->capture_default_str();
      sub.add_option("--seed", s.seed, "Random seed")->capture_default_str();
      sub.add_option("--ctx", s.ctx, "Context length to record")->capture_default_str();
      sub.add_option("--name", s.name, "general.name (default: synthetic-ARCH-DIM)");
      sub.add_flag("--tied-output", s.tied_output,
                   "Leave output.weight out, so the model reuses token_embd");
      sub.add_option("-t,--threads", s.threads, "Threads drawing the weights (0: one per core)")
          ->check(CLI::Range(0, 1024));
      sub.add_option("-o,--output", o->output, "GGUF file to write")->required();
      return [o] { return run_synth(*o); };
    });

}  // namespace
}  // namespace endless::cli
