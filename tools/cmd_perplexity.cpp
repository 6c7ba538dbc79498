// `endless perplexity`: llama-perplexity's chunked method, or (--stream) one endless stream
// through a cache policy with every token scored.
#include <cstdio>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "common.h"
#include "progress.h"
#include "runtime/perplexity.h"
#include "runtime/stream_eval.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  CacheOptions cache;
  std::string file;
  int n_ctx = 512;
  int chunks = -1;
  bool stream = false;
  std::string policies = "sink";
  int repeat = 1;
  int64_t segment = 1000;
  int64_t max_tokens = 0;
  int64_t recompute_window = 0;
  std::string csv, plot;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_chunked(const PerplexityOptions& o, Loaded& l, const std::vector<int32_t>& tokens) {
  std::fprintf(stderr, "%s: %zu tokens; chunks of %d\n", o.file.c_str(), tokens.size(), o.n_ctx);
  const int32_t bos = l.tokenizer->add_bos() ? l.tokenizer->bos_id() : -1;
  const auto r = chunked_perplexity(*l.engine, tokens, o.n_ctx, o.chunks, bos,
                                    std::min(o.cache.memory.max_batch, o.n_ctx), [](int c, double ppl) {
                                      std::fprintf(stderr, "[%d]%.4f,", c + 1, ppl);
                                      std::fflush(stderr);
                                    });
  std::fprintf(stderr, "\n");
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_error);
  return 0;
}

void write_plot(const std::string& png, const std::string& data_csv,
                const std::vector<StreamEvalResult>& results, const std::string& title) {
  std::string cmd = "gnuplot";
  FILE* g = popen(cmd.c_str(), "w");
  if (g == nullptr) fail("cannot run gnuplot (install gnuplot-nox) to draw ", png);
  std::fprintf(g, "set terminal pngcairo size 1100,600 font 'Sans,10'\n");
  std::fprintf(g, "set output '%s'\n", png.c_str());
  std::fprintf(g, "set datafile separator ','\nset key outside right\nset grid\n");
  std::fprintf(g, "set title '%s'\nset xlabel 'stream position (tokens)'\nset ylabel 'perplexity per segment'\n", title.c_str());
  std::fprintf(g, "set logscale y\nset format x '%%.0s%%c'\n");
  std::fprintf(g, "plot ");
  for (size_t i = 0; i < results.size(); ++i)
    std::fprintf(g, "%s'%s' using ($1==%zu ? $3 : 1/0):6 with linespoints lw 2 pt 7 ps 0.4 title '%s'",
                 i ? ", " : "", data_csv.c_str(), i, results[i].policy.c_str());
  std::fprintf(g, "\n");
  if (pclose(g) != 0) fail("gnuplot failed to draw ", png);
}

int run_stream(const PerplexityOptions& o, Loaded& l, const std::vector<int32_t>& file_tokens) {
  // The file R times over as one stream: BOS (if the model adds one) only at the very start.
  // Positions map back into the file, so the stream's length costs no memory.
  const int64_t skip = !file_tokens.empty() && l.tokenizer->add_bos() &&
                       file_tokens[0] == l.tokenizer->bos_id() ? 1 : 0;
  const int64_t n_file = static_cast<int64_t>(file_tokens.size());
  if (n_file - skip < 2) fail(o.file, ": too few tokens to stream");
  const int64_t stream_len = n_file + (o.repeat - 1) * (n_file - skip);
  const TokenAt token_at = [&](int64_t p) {
    return p < n_file ? file_tokens[p] : file_tokens[skip + (p - n_file) % (n_file - skip)];
  };
  const int64_t total = o.max_tokens > 0 ? std::min(o.max_tokens, stream_len) : stream_len;
  std::fprintf(stderr, "%s: %zu tokens, %d times over: %lld tokens streamed\n", o.file.c_str(), file_tokens.size(),
               o.repeat, static_cast<long long>(total));

  std::vector<StreamEvalResult> results;
  for (const std::string& policy : split(o.policies, ',')) {
    StreamEvalOptions so;
    CacheOptions c = o.cache;
    c.memory.policy = policy == "recompute" ? "full" : policy;
    so.memory = memory_config(c, l.engine->config(), l.tokenizer.get());
    so.recompute = policy == "recompute";
    so.recompute_window = o.recompute_window > 0 ? o.recompute_window : o.cache.memory.window;
    so.segment = o.segment;
    so.max_tokens = o.max_tokens;
    ProgressBar bar(policy);
    results.push_back(stream_perplexity(*l.engine, token_at, stream_len, so,
                                        [&](int64_t done, int64_t all) { bar.update(done, all); }));
    const auto& r = results.back();
    std::printf("%-16s PPL = %.4f over %lld tokens (%.1f tok/s, KV cache %.2f MiB)%s%s\n",
                r.policy.c_str(), r.ppl(), static_cast<long long>(r.scored),
                r.scored / std::max(r.seconds, 1e-9), r.cache_bytes / 1048576.0,
                r.stopped.empty() ? "" : "; ", r.stopped.c_str());
    for (size_t i = 0; i < r.segments.size(); ++i) {
      const auto& s = r.segments[i];
      std::printf("  [%lld, %lld) %.4f  %.0f tok/s\n", static_cast<long long>(s.begin),
                  static_cast<long long>(s.end), s.ppl(), s.count / std::max(s.seconds, 1e-9));
    }
    std::fflush(stdout);
  }

  std::string csv = o.csv;
  if (csv.empty() && !o.plot.empty()) csv = o.plot + ".csv";
  if (!csv.empty()) {
    std::ofstream out(csv);
    if (!out) fail("cannot write '", csv, "'");
    out << "policy_index,policy,segment_start,segment_end,tokens,ppl,cumulative_ppl,tokens_per_second,tokens_per_cpu_second\n";
    for (size_t p = 0; p < results.size(); ++p) {
      double nll = 0;
      int64_t n = 0;
      for (const auto& s : results[p].segments) {
        nll += s.nll;
        n += s.count;
        out << p << "," << results[p].policy << "," << s.begin << "," << s.end << "," << s.count << ","
            << s.ppl() << "," << std::exp(nll / n) << "," << s.count / std::max(s.seconds, 1e-9) << ","
            << s.count / std::max(s.cpu_seconds, 1e-9) << "\n";
      }
    }
  }
  if (!o.plot.empty()) {
    write_plot(o.plot, csv, results, "streaming perplexity: " + o.file.substr(o.file.find_last_of('/') + 1));
    std::fprintf(stderr, "plot written to %s\n", o.plot.c_str());
  }
  return 0;
}

int run(PerplexityOptions& o) {
  Loaded l = load(o.model);
  const std::string text = read_file(o.file);
  const std::vector<int32_t> tokens = l.tokenizer->encode(text, /*add_special=*/true);
  if (o.stream) return run_stream(o, l, tokens);
  return run_chunked(o, l, tokens);
}

Registration reg("perplexity", "Perplexity of a text file: chunked as llama-perplexity, or --stream through a cache policy",
                 [](CLI::App& sub) {
                   auto o = std::make_shared<PerplexityOptions>();
                   add_model_options(sub, o->model);
                   sub.add_option("-f,--file", o->file, "Text file")->required()->check(existing_file());
                   sub.add_option("-c,--ctx-size", o->n_ctx,
                                  "Tokens per chunk; with --stream, the cache size of full/shift")
                       ->check(CLI::Range(4, 1 << 24));
                   sub.add_option("--chunks", o->chunks, "Chunks to evaluate (default: all)");
                   sub.add_option("-b,--batch-size", o->cache.memory.max_batch, "Most tokens per forward pass")
                       ->check(CLI::Range(1, 1 << 16));
                   sub.add_flag("--stream", o->stream, "Stream the whole file as one sequence, scoring every token");
                   sub.add_option("--cache", o->policies,
                                  "With --stream: cache policy, or several separated by commas (full, window, sink, shift, sirllm, infllm, recompute)");
                   sub.add_option("--sink", o->cache.memory.n_sink, "Attention-sink tokens (sink)")->check(CLI::Range(0, 1 << 20));
                   sub.add_option("--window", o->cache.memory.window, "Tokens held by sink/window caches, sinks included")
                       ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
                   sub.add_option("--keep", o->cache.memory.n_keep, "Tokens kept by shift")->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
                   sub.add_option("--cache-type", o->cache.kv_type, "KV storage type: f16 or f32")->check(CLI::IsMember({"f16", "f32"}));
                   add_memory_policy_options(sub, o->cache);
                   sub.add_option("--recompute-window", o->recompute_window, "Window of the recompute baseline (default: --window)");
                   sub.add_option("--repeat", o->repeat, "Stream the file this many times over")->check(CLI::Range(1, 1 << 20));
                   sub.add_option("--segment", o->segment, "Tokens per reported segment")->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
                   sub.add_option("--max-tokens", o->max_tokens, "Stop the stream after this many tokens");
                   sub.add_option("--csv", o->csv, "Write per-segment perplexities to this CSV file");
                   sub.add_option("--plot", o->plot, "Draw perplexity against stream position to this PNG (gnuplot)");
                   return [o] {
                     if (o->stream) {
                       // -c sizes the full/shift cache in stream mode.
                       o->cache.n_ctx = o->n_ctx;
                       for (const auto& p : split(o->policies, ','))
                         if (p != "recompute" && std::find(policy_names().begin(), policy_names().end(), p) == policy_names().end())
                           fail("unknown cache policy '", p, "' (known: full, window, sink, shift, sirllm, infllm, recompute)");
                     }
                     return run(*o);
                   };
                 });

}  // namespace
}  // namespace endless::cli
