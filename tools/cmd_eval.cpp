// `endless eval recall`: does a cache policy bring back what left the window? A repeat-after-gap
// benchmark. For each passage P (real text from the file) the stream is
//   [BOS] filler + P + gap + P
// with the gap longer than the window, so the first P has been evicted when the second comes;
// the second P's tokens (all but its first) are scored. Each passage runs in paired arms on the
// same stream: the policy, plain `sink` at the same window, and a distractor arm (the policy with
// the first P replaced by an unrelated passage: the same memory budget, filled with unrelated
// evicted text). The paired differences say how much the policy's memory of P helps.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "common.h"
#include "memory/infllm.h"
#include "progress.h"
#include "runtime/perplexity.h"
#include "runtime/policy_feedback.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct RecallOptions {
  ModelOptions model;
  CacheOptions cache;
  std::string file;
  int passages = 40;
  int passage_len = 100;
  int64_t gap = 600;
  int64_t filler = 1024;
  int chunk = 1;
  uint32_t seed = 1;
  std::string csv;
};

struct ArmResult {
  double nll = 0;          // mean over the scored tokens
  int64_t retrievals = 0;  // infllm: retrievals (layer x chunk, in layers that retrieve) while the second P was read
  int64_t hits = 0;        // ... that included a block holding part of the first P
  // The same per quarter of the second P (a retrieval scored by what was just read cannot know
  // the passage until part of it has been read again).
  int64_t q_retrievals[4] = {}, q_hits[4] = {};
  std::vector<int64_t> l_retrievals, l_hits;  // per layer
};

// Streams `stream` through a new sequence: everything before the second passage in chunks of
// the batch size, the second passage in chunks of `chunk` tokens (1: one token per pass, as in
// decoding), and scores the passage's tokens after its first.
ArmResult run_arm(Engine& engine, const MemoryConfig& mem, const std::vector<int32_t>& stream, int64_t p2,
                  int64_t len, int chunk, int64_t p1_first, int64_t p1_end) {
  auto seq = engine.new_sequence(mem);
  FeedbackEval feed;
  const int64_t V = engine.config().n_vocab;
  feed.eval(engine, *seq, std::span(stream).first(p2));
  ArmResult r;
  r.l_retrievals.assign(engine.config().n_layers, 0);
  r.l_hits.assign(engine.config().n_layers, 0);
  auto* infllm = dynamic_cast<InfLLMPolicy*>(seq->policy.get());
  double nll = 0;
  for (int64_t at = p2; at < p2 + len - 1; at += chunk) {
    const int64_t n = std::min<int64_t>(chunk, p2 + len - 1 - at);
    const auto logits = feed.eval(engine, *seq, std::span(stream).subspan(at, n), /*all_logits=*/true);
    for (int64_t j = 0; j < n; ++j) nll += token_nll(logits.subspan(j * V, V), stream[at + j + 1]);
    if (infllm != nullptr) {
      for (int l = 0; l < engine.config().n_layers; ++l) {
        // Layers that retrieve nothing (--mem-skip-layers, or no block yet) are not retrievals.
        if (infllm->retrieved(l).empty()) continue;
        bool hit = false;
        for (int64_t b : infllm->retrieved(l)) {
          const int64_t first = infllm->block_first(b);
          hit |= first < p1_end && first + mem.block_size > p1_first;
        }
        ++r.retrievals;
        r.hits += hit;
        const int quarter = static_cast<int>(std::min<int64_t>(3, 4 * (at - p2) / std::max<int64_t>(1, len - 1)));
        ++r.q_retrievals[quarter];
        r.q_hits[quarter] += hit;
        ++r.l_retrievals[l];
        r.l_hits[l] += hit;
      }
    }
  }
  r.nll = nll / static_cast<double>(len - 1);
  return r;
}

struct Paired {
  double mean = 0, se = 0;
  int improved = 0;
};

Paired paired(const std::vector<double>& base, const std::vector<double>& policy) {
  Paired p;
  const size_t n = base.size();
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) {
    d[i] = base[i] - policy[i];  // positive: the policy predicts the repeat better
    p.mean += d[i] / static_cast<double>(n);
    p.improved += d[i] > 0;
  }
  double ss = 0;
  for (double x : d) ss += (x - p.mean) * (x - p.mean);
  p.se = n > 1 ? std::sqrt(ss / static_cast<double>(n - 1) / static_cast<double>(n)) : 0;
  return p;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

int run_recall(RecallOptions& o) {
  Loaded l = load(o.model);
  std::ifstream in(o.file, std::ios::binary);
  if (!in) fail("cannot open '", o.file, "'");
  std::ostringstream text;
  text << in.rdbuf();
  const std::vector<int32_t> tokens = l.tokenizer->encode(text.str(), /*add_special=*/false);
  const int64_t L = o.passage_len;
  const MemoryConfig mem = memory_config(o.cache, l.engine->config(), l.tokenizer.get());
  if (mem.policy == "full") fail("eval recall: --cache full has no window to evict from; pick a streaming policy");
  MemoryConfig sink = mem;
  sink.policy = "sink";
  const int64_t window = mem.window;
  if (o.gap <= window)
    fail("eval recall: the gap (", o.gap, ") must be longer than the window (", window,
         ") so that the first passage is evicted");
  const int64_t need = o.filler + o.gap + 2 * L;
  if (static_cast<int64_t>(tokens.size()) < 2 * need)
    fail(o.file, ": ", tokens.size(), " tokens are too few for passages of ", L, " with filler ", o.filler,
         " and gap ", o.gap, " (need ", 2 * need, ")");
  const bool bos = l.tokenizer->add_bos() && l.tokenizer->bos_id() >= 0;

  std::mt19937_64 rng(o.seed);
  std::vector<double> nll_policy, nll_sink, nll_distractor;
  int64_t retrievals = 0, hits = 0, q_retrievals[4] = {}, q_hits[4] = {};
  std::vector<int64_t> l_retrievals(l.engine->config().n_layers, 0), l_hits(l.engine->config().n_layers, 0);
  std::FILE* csv = nullptr;
  if (!o.csv.empty()) {
    csv = std::fopen(o.csv.c_str(), "w");
    if (csv == nullptr) fail("cannot write '", o.csv, "'");
    std::fprintf(csv, "passage,offset,nll_policy,nll_sink,nll_distractor,hit_rate\n");
  }
  std::string policy_name;
  ProgressBar bar("recall", "passages");
  for (int k = 0; k < o.passages; ++k) {
    // Non-overlapping pieces of the file: the passage, a distractor, the filler and the gap.
    const int64_t lens[4] = {L, L, o.filler, o.gap};
    int64_t at[4];
    for (int tries = 0;; ++tries) {
      if (tries > 10000) fail(o.file, ": cannot place non-overlapping passages; use a longer file");
      for (int i = 0; i < 4; ++i)
        at[i] = static_cast<int64_t>(rng() % static_cast<uint64_t>(tokens.size() - lens[i] + 1));
      bool overlap = false;
      for (int i = 0; i < 4; ++i)
        for (int j = i + 1; j < 4; ++j)
          overlap |= at[i] < at[j] + lens[j] && at[j] < at[i] + lens[i];
      if (!overlap) break;
    }
    auto piece = [&](int i) { return std::span(tokens).subspan(at[i], lens[i]); };
    auto build = [&](int first) {
      std::vector<int32_t> s;
      if (bos) s.push_back(l.tokenizer->bos_id());
      for (int32_t t : piece(2)) s.push_back(t);
      for (int32_t t : piece(first)) s.push_back(t);
      for (int32_t t : piece(3)) s.push_back(t);
      for (int32_t t : piece(0)) s.push_back(t);
      return s;
    };
    const std::vector<int32_t> stream = build(0), distract = build(1);
    const int64_t p1 = (bos ? 1 : 0) + o.filler, p2 = p1 + L + o.gap;
    const ArmResult a = run_arm(*l.engine, mem, stream, p2, L, o.chunk, p1, p1 + L);
    const ArmResult b = run_arm(*l.engine, sink, stream, p2, L, o.chunk, p1, p1 + L);
    const ArmResult c = run_arm(*l.engine, mem, distract, p2, L, o.chunk, p1, p1 + L);
    nll_policy.push_back(a.nll);
    nll_sink.push_back(b.nll);
    nll_distractor.push_back(c.nll);
    retrievals += a.retrievals;
    hits += a.hits;
    for (int j = 0; j < 4; ++j) {
      q_retrievals[j] += a.q_retrievals[j];
      q_hits[j] += a.q_hits[j];
    }
    for (size_t j = 0; j < l_hits.size(); ++j) {
      l_retrievals[j] += a.l_retrievals[j];
      l_hits[j] += a.l_hits[j];
    }
    if (csv != nullptr)
      std::fprintf(csv, "%d,%lld,%.6f,%.6f,%.6f,%.4f\n", k, static_cast<long long>(at[0]), a.nll, b.nll, c.nll,
                   a.retrievals ? static_cast<double>(a.hits) / a.retrievals : 0.0);
    bar.update(k + 1, o.passages);
  }
  if (csv != nullptr) std::fclose(csv);
  const std::string name = l.engine->new_sequence(mem)->policy->describe();
  const std::string sink_name = l.engine->new_sequence(sink)->policy->describe();
  std::printf("recall: %d passages of %lld tokens (%lld scored each), filler %lld, gap %lld, chunk %d, seed %u\n",
              o.passages, static_cast<long long>(L), static_cast<long long>(L - 1),
              static_cast<long long>(o.filler), static_cast<long long>(o.gap), o.chunk, o.seed);
  std::printf("  %-36s mean NLL %.4f  ppl %.3f\n", name.c_str(), mean(nll_policy), std::exp(mean(nll_policy)));
  std::printf("  %-36s mean NLL %.4f  ppl %.3f\n", sink_name.c_str(), mean(nll_sink), std::exp(mean(nll_sink)));
  std::printf("  %-36s mean NLL %.4f  ppl %.3f\n", "distractor (same policy)", mean(nll_distractor),
              std::exp(mean(nll_distractor)));
  const Paired vs_sink = paired(nll_sink, nll_policy), vs_distractor = paired(nll_distractor, nll_policy);
  std::printf("gain over sink:       %+.4f +/- %.4f nats/token; %d of %d passages improved (%.0f%%)\n",
              vs_sink.mean, vs_sink.se, vs_sink.improved, o.passages, 100.0 * vs_sink.improved / o.passages);
  std::printf("gain over distractor: %+.4f +/- %.4f nats/token; %d of %d passages improved (%.0f%%)\n",
              vs_distractor.mean, vs_distractor.se, vs_distractor.improved, o.passages,
              100.0 * vs_distractor.improved / o.passages);
  if (retrievals > 0)
    std::printf("retrieval hit rate:   %.3f (%lld of %lld retrievals, per layer and chunk, included a block holding the first passage)\n",
                static_cast<double>(hits) / retrievals, static_cast<long long>(hits), static_cast<long long>(retrievals));
  if (retrievals > 0) {
    std::printf("  by quarter of the repeat:");
    for (int j = 0; j < 4; ++j)
      std::printf(" %.3f", q_retrievals[j] ? static_cast<double>(q_hits[j]) / q_retrievals[j] : 0.0);
    std::printf("\n  by layer:");
    for (size_t j = 0; j < l_hits.size(); ++j)
      if (l_retrievals[j] > 0) std::printf(" %zu: %.3f", j, static_cast<double>(l_hits[j]) / l_retrievals[j]);
    std::printf("\n");
  }
  return 0;
}

Registration reg("eval", "Benchmarks of cache policies (recall: repeat after a gap)", [](CLI::App& sub) {
  sub.require_subcommand(1);
  auto o = std::make_shared<RecallOptions>();
  o->cache.memory.policy = "infllm";
  CLI::App* recall = sub.add_subcommand(
      "recall", "Repeat-after-gap: the policy vs plain sink vs a distractor memory, paired per passage");
  add_model_options(*recall, o->model);
  recall->add_option("-f,--file", o->file, "Text the passages, fillers and gaps are drawn from")
      ->required()
      ->check(existing_file());
  add_cache_options(*recall, o->cache);
  recall->add_option("--passages", o->passages, "Passages (paired trials)")->check(CLI::Range(1, 100000));
  recall->add_option("--passage-len", o->passage_len, "Tokens per passage")->check(CLI::Range(2, 1 << 20));
  recall->add_option("--gap", o->gap, "Tokens between the passage and its repeat (more than the window)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  recall->add_option("--filler", o->filler, "Tokens of unrelated text before the first passage")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  recall->add_option("--chunk", o->chunk, "Tokens per pass while the repeat is read (1: as decoding)")
      ->check(CLI::Range(1, 1 << 16));
  recall->add_option("--seed", o->seed, "Random seed for the passages' places");
  recall->add_option("--csv", o->csv, "Per-passage results to this CSV file");
  return [o, recall] {
    if (!*recall) fail("eval: name a benchmark (recall)");
    return run_recall(*o);
  };
});

}  // namespace
}  // namespace endless::cli
