// `endless run`: stream a prompt and its continuation to stdout.
#include <chrono>
#include <cstdio>
#include <iostream>

#include <unistd.h>

#include "common.h"
#include "runtime/policy_feedback.h"
#include "runtime/sampler.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  CacheOptions cache;
  SamplerConfig sampling;
  std::string prompt;
  int n_predict = 128;
  bool ids = false;
  bool ignore_eos = false;
};

int run(RunOptions& o) {
  using clock = std::chrono::steady_clock;
  o.sampling.validate();
  Loaded l = load(o.model);
  const Tokenizer& tok = *l.tokenizer;
  Engine& engine = *l.engine;
  const MemoryConfig mem = memory_config(o.cache, engine.config(), &tok);
  auto seq = engine.new_sequence(mem);
  Sampler sampler(o.sampling);

  std::vector<int32_t> prompt = tok.encode(o.prompt, /*add_special=*/true);
  if (prompt.empty()) fail("the prompt is empty and the model adds no BOS token: nothing to start from");
  StreamingDetokenizer detok(tok);
  if (!o.ids) {
    for (int32_t t : prompt) std::cout << detok.push(t);
    std::cout << std::flush;
  }
  for (int32_t t : prompt) sampler.accept(t);

  const auto t0 = clock::now();
  FeedbackEval feed;  // NLL feedback for policies that use it (sirllm)
  std::span<const float> logits = feed.eval(engine, *seq, prompt);
  const auto t1 = clock::now();
  const int64_t n_vocab = engine.config().n_vocab;
  int generated = 0;
  std::string sep;
  for (; generated < o.n_predict; ++generated) {
    const int32_t next = sampler.sample(logits.first(n_vocab));
    if (!o.ignore_eos && tok.is_eog(next)) break;
    sampler.accept(next);
    if (o.ids) {
      std::cout << sep << next << std::flush;
      sep = " ";
    } else {
      std::cout << detok.push(next) << std::flush;
    }
    if (generated + 1 == o.n_predict) {
      ++generated;
      break;
    }
    const int32_t one[1] = {next};
    logits = feed.eval(engine, *seq, one);
  }
  if (!o.ids) std::cout << detok.finish();
  // A final newline keeps the shell prompt tidy; piped output stays exactly the text generated.
  if (isatty(STDOUT_FILENO)) std::cout << "\n";
  std::cout << std::flush;
  const auto t2 = clock::now();
  const double pp = std::chrono::duration<double>(t1 - t0).count();
  const double tg = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "\nprompt: %zu tokens in %.3f s (%.1f tok/s); generated: %d tokens in %.3f s (%.1f tok/s); cache: %s, %lld tokens held\n",
               prompt.size(), pp, prompt.size() / std::max(pp, 1e-9), generated, tg,
               generated / std::max(tg, 1e-9), seq->policy->describe().c_str(),
               static_cast<long long>(seq->policy->retained()));
  return 0;
}

Registration reg("run", "Generate text: stream the prompt and its continuation to stdout",
                 [](CLI::App& sub) {
                   auto o = std::make_shared<RunOptions>();
                   add_model_options(sub, o->model, /*required=*/false);
                   add_cache_options(sub, o->cache);
                   sub.add_option("-p,--prompt", o->prompt, "Prompt text (default: empty, BOS only)");
                   sub.add_option("-n,--n-predict", o->n_predict, "Tokens to generate")
                       ->check(CLI::Range(0, 1 << 30));
                   sub.add_option("--temp", o->sampling.temperature, "Temperature; 0 = greedy")
                       ->check(CLI::Range(0.0f, 100.0f));
                   sub.add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")
                       ->check(CLI::Range(0, 1 << 30));
                   sub.add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")
                       ->check(CLI::Range(0.0f, 1.0f));
                   sub.add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")
                       ->check(CLI::Range(0.0f, 1.0f));
                   sub.add_option("--repeat-penalty", o->sampling.repeat_penalty,
                                  "Repetition penalty (1 = off)")
                       ->check(CLI::Range(0.001f, 100.0f));
                   sub.add_option("--repeat-last-n", o->sampling.repeat_last_n,
                                  "Tokens the repetition penalty looks back over")
                       ->check(CLI::Range(0, 1 << 20));
                   sub.add_option("-s,--seed", o->sampling.seed, "Random seed");
                   sub.add_flag("--ids", o->ids, "Print the generated token ids instead of text");
                   sub.add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-text");
                   return [o] { return run(*o); };
                 });

}  // namespace
}  // namespace endless::cli
