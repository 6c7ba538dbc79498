// `endless stream`: read stdin forever (a pipe, `tail -f`), keep the model's state current at
// bounded cost, and answer when asked. A line starting with the question prefix (default ">>> ")
// is a question: the model's reply is printed to stdout, then listening goes on. EOF ends cleanly.
#include <cstdio>
#include <iostream>
#include <string>

#include "common.h"
#include "runtime/policy_feedback.h"
#include "runtime/sampler.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct StreamOptions {
  ModelOptions model;
  CacheOptions cache;
  SamplerConfig sampling;
  std::string prefix = ">>> ";
  int n_predict = 128;
  bool multiline = false;
  bool quiet = false;
};

int run(StreamOptions& o) {
  o.sampling.validate();
  Loaded l = load(o.model);
  const Tokenizer& tok = *l.tokenizer;
  Engine& engine = *l.engine;
  auto seq = engine.new_sequence(memory_config(o.cache, engine.config(), &tok));
  FeedbackEval feedback;  // NLL feedback for policies that use it (sirllm)
  Sampler sampler(o.sampling);
  const int64_t n_vocab = engine.config().n_vocab;
  std::span<const float> logits;
  bool started = false;
  int64_t lines = 0, questions = 0;

  // Appends text to the stream (BOS first, if the model wants one, at the very start).
  auto feed = [&](const std::string& text) {
    std::vector<int32_t> ids = tok.encode(text, /*add_special=*/false);
    if (!started) {
      if (tok.add_bos() && tok.bos_id() >= 0) ids.insert(ids.begin(), tok.bos_id());
      started = true;
    }
    if (ids.empty()) return;
    for (int32_t t : ids) sampler.accept(t);
    logits = feedback.eval(engine, *seq, ids);
  };

  if (!o.quiet)
    std::fprintf(stderr, "endless stream: reading stdin; lines starting with '%s' are questions (%s)\n",
                 o.prefix.c_str(), seq->policy->describe().c_str());
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind(o.prefix, 0) == 0) {
      ++questions;
      feed(line.substr(o.prefix.size()) + "\n");
      if (logits.empty()) continue;
      StreamingDetokenizer detok(tok);
      std::string reply;
      for (int i = 0; i < o.n_predict; ++i) {
        const int32_t next = sampler.sample(logits.first(n_vocab));
        if (tok.is_eog(next)) break;
        sampler.accept(next);
        const std::string piece = detok.push(next);
        const int32_t one[1] = {next};
        logits = feedback.eval(engine, *seq, one);  // the reply becomes part of the stream
        const size_t nl = piece.find('\n');
        if (!o.multiline && nl != std::string::npos) {
          std::cout << piece.substr(0, nl);
          break;
        }
        std::cout << piece << std::flush;
      }
      std::cout << detok.finish() << "\n" << std::flush;
      seq->policy->end_turn();  // a question and its reply make one turn (sirllm decays there)
    } else {
      ++lines;
      feed(line + "\n");
    }
  }
  if (!o.quiet)
    std::fprintf(stderr, "endless stream: end of input after %lld lines and %lld questions; %lld tokens seen, %lld held (%s, %.2f MiB)\n",
                 static_cast<long long>(lines), static_cast<long long>(questions),
                 static_cast<long long>(seq->policy->n_seen()), static_cast<long long>(seq->policy->retained()),
                 seq->policy->describe().c_str(), seq->store.bytes() / 1048576.0);
  return 0;
}

Registration reg("stream", "Read stdin forever at bounded cost; answer lines that start with the question prefix",
                 [](CLI::App& sub) {
                   auto o = std::make_shared<StreamOptions>();
                   o->cache.memory.policy = "sink";
                   o->sampling.temperature = 0;
                   add_model_options(sub, o->model, /*required=*/false);
                   add_cache_options(sub, o->cache);
                   sub.add_option("--prefix", o->prefix, "Lines starting with this are questions");
                   sub.add_option("-n,--n-predict", o->n_predict, "Most tokens per reply")->check(CLI::Range(1, 1 << 20));
                   sub.add_flag("--multiline", o->multiline, "Let a reply run past the end of its line");
                   sub.add_option("--temp", o->sampling.temperature, "Temperature; 0 = greedy (default)")->check(CLI::Range(0.0f, 100.0f));
                   sub.add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")->check(CLI::Range(0, 1 << 30));
                   sub.add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")->check(CLI::Range(0.0f, 1.0f));
                   sub.add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")->check(CLI::Range(0.0f, 1.0f));
                   sub.add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1 = off)")->check(CLI::Range(0.001f, 100.0f));
                   sub.add_option("-s,--seed", o->sampling.seed, "Random seed");
                   sub.add_flag("-q,--quiet", o->quiet, "No status lines on stderr");
                   return [o] { return run(*o); };
                 });

}  // namespace
}  // namespace endless::cli
