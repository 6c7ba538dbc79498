// `endless perplexity`: llama-perplexity's chunked method.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common.h"
#include "runtime/perplexity.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int n_ctx = 512;
  int chunks = -1;
  int batch = 512;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int run(const PerplexityOptions& o) {
  Loaded l = load(o.model);
  const std::string text = read_file(o.file);
  const std::vector<int32_t> tokens = l.tokenizer->encode(text, /*add_special=*/true);
  std::fprintf(stderr, "%s: %zu tokens; chunks of %d\n", o.file.c_str(), tokens.size(), o.n_ctx);
  const int32_t bos = l.tokenizer->add_bos() ? l.tokenizer->bos_id() : -1;
  const auto r = chunked_perplexity(*l.engine, tokens, o.n_ctx, o.chunks, bos,
                                    std::min(o.batch, o.n_ctx), [](int c, double ppl) {
                                      std::fprintf(stderr, "[%d]%.4f,", c + 1, ppl);
                                      std::fflush(stderr);
                                    });
  std::fprintf(stderr, "\n");
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_error);
  return 0;
}

Registration reg("perplexity", "Perplexity of a text file, chunked as llama-perplexity does",
                 [](CLI::App& sub) {
                   auto o = std::make_shared<PerplexityOptions>();
                   add_model_options(sub, o->model);
                   sub.add_option("-f,--file", o->file, "Text file")->required()->check(existing_file());
                   sub.add_option("-c,--ctx-size", o->n_ctx, "Tokens per chunk")
                       ->check(CLI::Range(4, 1 << 20));
                   sub.add_option("--chunks", o->chunks, "Chunks to evaluate (default: all)");
                   sub.add_option("-b,--batch-size", o->batch, "Most tokens per forward pass")
                       ->check(CLI::Range(1, 1 << 16));
                   return [o] { return run(*o); };
                 });

}  // namespace
}  // namespace endless::cli
