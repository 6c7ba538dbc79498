// `endless convert --llama2c MODEL.bin --tokenizer TOK.bin -o OUT.gguf`: turns a llama2.c
// checkpoint and its tokenizer into a GGUF model of llama.cpp's `llama` architecture.
#include <cstdio>

#include "cli.h"
#include "convert/llama2c.h"

namespace endless::cli {
namespace {

struct ConvertOptions {
  std::string llama2c;
  std::string tokenizer;
  std::string output;
  convert::Llama2cOptions gguf;
};

int run_convert(const ConvertOptions& o) {
  const convert::Llama2cConfig c =
      convert::convert_llama2c(o.llama2c, o.tokenizer, o.output, o.gguf);
  std::printf("converted %s (llama2.c version %d: %s)\n", o.llama2c.c_str(), c.version,
              c.describe().c_str());
  std::printf("wrote %s\n", o.output.c_str());
  return 0;
}

Registration reg(
    "convert", "Convert a llama2.c checkpoint and tokenizer into a GGUF model",
    [](CLI::App& sub) {
      auto o = std::make_shared<ConvertOptions>();
      sub.footer(
          "Reads llama2.c checkpoints of version 0 (legacy, as run.c reads them) and version 1 "
          "(float32, \"ak42\" header) and llama2.c tokenizers (tok*.bin). Weights are copied "
          "unchanged as F32; the result loads like llama.cpp's convert-llama2c-to-ggml output.");
      sub.add_option("--llama2c", o->llama2c, "llama2.c checkpoint (.bin)")
          ->required()
          ->check(existing_file());
      sub.add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer (tok*.bin)")
          ->required()
          ->check(existing_file());
      sub.add_option("-o,--output", o->output, "GGUF file to write")->required();
      sub.add_option("--ctx", o->gguf.context_length,
                     "llama.context_length to record (default: the checkpoint's seq_len)")
          ->check(CLI::PositiveNumber);
      sub.add_option("--name", o->gguf.name, "general.name to record")
          ->default_str(o->gguf.name);
      sub.add_flag("--omit-shared-output", o->gguf.omit_shared_output,
                   "When the classifier is shared with the token embeddings, leave output.weight "
                   "out (loaders tie it to token_embd.weight) instead of writing a copy");
      return [o] { return run_convert(*o); };
    });

}  // namespace
}  // namespace endless::cli
