// The scheduler: what a sequence computes does not depend on what else shares its forward pass
// (bit for bit), so a request made among others gives exactly the tokens it gives alone; long
// prefills advance in chunks without starving others; stop strings, limits, interruption, and the
// stream invariants sessions rely on.
#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "runtime/policy_feedback.h"
#include "server/metrics.h"
#include "test_support.h"
#include "tiny_model.h"

namespace endless::server {
namespace {

using endless::testing::TinyModelSpec;

struct Fixture {
  std::shared_ptr<const Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
};

Fixture tiny(const std::string& name, TensorType type = TensorType::F32, int threads = 2) {
  TinyModelSpec spec;
  spec.type = type;
  spec.vocab = 256;
  spec.ctx = 4096;
  const auto path = endless::testing::scratch_dir(name) / "model.gguf";
  endless::testing::write_tiny_model(spec, path.string());
  Fixture f;
  f.model = Model::load(path.string());
  f.tok = std::make_unique<Tokenizer>(Tokenizer::from_gguf(f.model->file()));
  f.engine = std::make_unique<Engine>(f.model, threads);
  return f;
}

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(3 + rng() % 250);  // no BOS/EOS/UNK
  return t;
}

MemoryConfig full(int64_t n_ctx, int batch) {
  MemoryConfig m;
  m.policy = "full";
  m.n_ctx = n_ctx;
  m.max_batch = batch;
  return m;
}

MemoryConfig sink(int n_sink, int64_t window, int batch) {
  MemoryConfig m;
  m.policy = "sink";
  m.n_sink = n_sink;
  m.window = window;
  m.max_batch = batch;
  return m;
}

GenerationParams params(int max_tokens, float temperature, uint64_t seed) {
  GenerationParams p;
  p.max_tokens = max_tokens;
  p.sampling.temperature = temperature;
  p.sampling.top_k = 0;
  p.sampling.top_p = 0.95f;
  p.sampling.min_p = 0;
  p.sampling.seed = seed;
  p.ignore_eos = true;
  return p;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The property the whole scheduler rests on: a part's logits are the same bits whatever else is in
// the batch, for prefill chunks and single decode tokens, with quantized weights. (F16/F32 weights
// take ggml's batched arithmetic for products of several tokens on AVX-512 machines, as llama.cpp
// does, so there a token decoded alone and one decoded among others may differ in the last bits.)
TEST(Batching, LogitsDoNotDependOnTheRestOfTheBatch) {
  for (TensorType type : {TensorType::Q8_0, TensorType::Q4_0}) {
    Fixture f = tiny(std::string("batch-bits-") + std::string(type_name(type)), type);
    Engine& e = *f.engine;
    const int64_t V = e.config().n_vocab;
    const auto a = random_tokens(37, 1), b = random_tokens(5, 2), c = random_tokens(64, 3);

    auto alone = e.new_sequence(full(256, 64));
    std::vector<float> want_prefill = e.eval(*alone, a, true);
    const int32_t next[1] = {7};
    std::vector<float> want_decode = e.eval(*alone, next, false);

    auto sa = e.new_sequence(full(256, 64)), sb = e.new_sequence(full(256, 64)), sc = e.new_sequence(full(256, 64));
    BatchPart parts[3] = {{sb.get(), b, false}, {sa.get(), a, true}, {sc.get(), c, false}};
    const std::vector<float> together = e.forward(parts);
    ASSERT_EQ(together.size(), static_cast<size_t>(V * (1 + a.size() + 1)));
    EXPECT_TRUE(same_bits(std::span(together).subspan(V, V * a.size()), want_prefill)) << type_name(type);

    const int32_t other[1] = {9};
    BatchPart step[3] = {{sc.get(), other, false}, {sa.get(), next, false}, {sb.get(), other, false}};
    const std::vector<float> decode = e.forward(step);
    EXPECT_TRUE(same_bits(std::span(decode).subspan(V, V), want_decode)) << type_name(type);
  }
}

struct Request {
  std::vector<int32_t> prompt;
  GenerationParams p;
};

std::vector<Request> mixed_requests(int n) {
  std::vector<Request> r;
  for (int i = 0; i < n; ++i)
    r.push_back({random_tokens(3 + 11 * i % 45, 100 + i), params(8 + i % 7, i % 3 == 0 ? 0.0f : 0.9f, 1000 + i)});
  return r;
}

TEST(Scheduler, ConcurrentRequestsGiveWhatEachGivesAlone) {
  Fixture f = tiny("sched-concurrent", TensorType::Q8_0);
  const auto requests = mixed_requests(12);
  std::vector<GenerationResult> alone;
  {
    Scheduler s(*f.engine, *f.tok, {.parallel = 1, .batch_tokens = 512, .chunk = 512}, nullptr);
    s.start();
    for (const auto& r : requests) alone.push_back(s.submit(r.prompt, full(128, 512), r.p)->wait());
  }
  Metrics metrics;
  Scheduler s(*f.engine, *f.tok, {.parallel = 5, .batch_tokens = 24, .chunk = 7}, &metrics);
  s.start();
  std::vector<std::shared_ptr<Generation>> gens;
  for (const auto& r : requests) gens.push_back(s.submit(r.prompt, full(128, 7), r.p));
  for (size_t i = 0; i < gens.size(); ++i) {
    const GenerationResult got = gens[i]->wait();
    EXPECT_EQ(got.tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(got.text, alone[i].text) << "request " << i;
    EXPECT_EQ(got.finish_reason, "length");
    EXPECT_EQ(got.completion_tokens, requests[i].p.max_tokens);
    EXPECT_EQ(got.prompt_tokens, static_cast<int>(requests[i].prompt.size()));
  }
  // They really were batched: fewer steps than one sequence at a time would need.
  int64_t alone_steps = 0;
  for (const auto& r : requests) alone_steps += (static_cast<int64_t>(r.prompt.size()) + 6) / 7 + r.p.max_tokens - 1;
  EXPECT_LT(s.stats().steps, alone_steps / 2);
  EXPECT_NE(metrics.render({}).find("endless_generated_tokens_total"), std::string::npos);
}

TEST(Scheduler, LongPrefillDoesNotStarveOthers) {
  Fixture f = tiny("sched-fair");
  Scheduler s(*f.engine, *f.tok, {.parallel = 2, .batch_tokens = 8, .chunk = 4}, nullptr);
  s.start();
  auto longer = s.submit(random_tokens(600, 5), full(700, 4), params(1, 0, 1));
  auto shorter = s.submit(random_tokens(6, 6), full(64, 4), params(5, 0, 1));
  const GenerationResult r = shorter->wait();
  EXPECT_EQ(r.completion_tokens, 5);
  EXPECT_FALSE(longer->finished()) << "the short request waited for the long prefill";
  EXPECT_EQ(longer->wait().completion_tokens, 1);
}

TEST(Scheduler, WaitingQueueIsBounded) {
  Fixture f = tiny("sched-queue");
  Scheduler s(*f.engine, *f.tok, {.parallel = 1, .batch_tokens = 8, .chunk = 4, .max_waiting = 2}, nullptr);
  // Not started: nothing is admitted, so the queue fills.
  s.submit(random_tokens(4, 1), full(64, 4), params(2, 0, 1));
  s.submit(random_tokens(4, 2), full(64, 4), params(2, 0, 1));
  try {
    s.submit(random_tokens(4, 3), full(64, 4), params(2, 0, 1));
    FAIL() << "a third waiting request was accepted";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 429);
  }
  EXPECT_THROW(s.submit({}, full(64, 4), params(2, 0, 1)), HttpError);
}

TEST(Scheduler, StopStringsEndTheTextBeforeThem) {
  Fixture f = tiny("sched-stop");
  Scheduler s(*f.engine, *f.tok, {}, nullptr);
  s.start();
  const auto prompt = random_tokens(9, 8);
  const GenerationResult plain = s.submit(prompt, full(128, 64), params(20, 0, 1))->wait();
  ASSERT_GT(plain.text.size(), 12u);
  // A stop string starting in the middle of the text, spanning tokens.
  const std::string stop = plain.text.substr(5, 6);
  const size_t at = plain.text.find(stop);
  GenerationParams p = params(20, 0, 1);
  p.stop = {"never appears \x01", stop};
  auto g = s.submit(prompt, full(128, 64), p);
  std::string streamed, piece;
  while (g->next(piece, std::chrono::milliseconds(100)) != Generation::Poll::Done) streamed += piece;
  const GenerationResult r = g->result();
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.text, plain.text.substr(0, at));
  EXPECT_EQ(streamed, r.text) << "text of the stop string was sent before the match";
}

TEST(Scheduler, FullContextEndsWithLength) {
  Fixture f = tiny("sched-ctx");
  Scheduler s(*f.engine, *f.tok, {}, nullptr);
  s.start();
  const GenerationResult r = s.submit(random_tokens(10, 1), full(14, 64), params(100, 0, 1))->wait();
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.completion_tokens, 4);
}

// A persistent stream is a prompt that grows: generating from it gives what a stateless request
// with the whole stream as its prompt gives, before and after appends, with chunked feeding,
// held-back tokens and a sink cache that evicts.
TEST(Scheduler, StreamsContinueExactly) {
  Fixture f = tiny("sched-stream", TensorType::Q8_0);
  Scheduler s(*f.engine, *f.tok, {.parallel = 3, .batch_tokens = 16, .chunk = 5}, nullptr);
  s.start();
  const MemoryConfig mem = sink(4, 40, 5);
  std::vector<int32_t> stream = random_tokens(23, 11);
  auto st = s.add_stream(f.engine->new_sequence(mem), stream, static_cast<int64_t>(stream.size()), nullptr);
  auto reference = [&](const std::vector<int32_t>& prompt, const GenerationParams& p) {
    return s.submit(prompt, mem, p)->wait();
  };
  for (int round = 0; round < 4; ++round) {
    const GenerationParams p = params(6 + round, round % 2 ? 0.8f : 0.0f, 50 + round);
    auto g = std::make_shared<Generation>(p, 0);
    s.generate(*st, g);
    const GenerationResult got = g->wait();
    const GenerationResult want = reference(stream, p);
    ASSERT_EQ(got.tokens, want.tokens) << "round " << round;
    EXPECT_EQ(got.text, want.text);
    stream.insert(stream.end(), got.tokens.begin(), got.tokens.end());
    const auto more = random_tokens(9 + 13 * round, 70 + round);
    s.append(*st, more);
    stream.insert(stream.end(), more.begin(), more.end());
    ASSERT_TRUE(s.wait_idle(std::chrono::seconds(30)));
    const StreamStats stats = s.stats(*st);
    EXPECT_EQ(stats.tokens_total, static_cast<int64_t>(stream.size()));
    EXPECT_EQ(stats.tokens_fed, stats.tokens_total - 1) << "exactly the last token waits";
    EXPECT_EQ(stats.tokens_in_memory, std::min<int64_t>(stats.tokens_fed, 40));
    EXPECT_EQ(stats.state, "idle");
  }
}

// A sirllm stream in the server scores its tokens as run and stream do: after the same tokens in
// the same chunks, its policy state (retained tokens and their NLL scores) equals that of a
// sequence fed through FeedbackEval.
TEST(Scheduler, SirllmStreamsGetEveryTokensNll) {
  Fixture f = tiny("sched-sirllm", TensorType::Q8_0);
  Scheduler s(*f.engine, *f.tok, {.parallel = 3, .batch_tokens = 16, .chunk = 5}, nullptr);
  s.start();
  MemoryConfig mem;
  mem.policy = "sirllm";
  mem.n_sink = 2;
  mem.window = 24;
  mem.sir_keep = 8;
  mem.max_batch = 5;
  const std::vector<int32_t> stream = random_tokens(121, 33);
  auto st = s.add_stream(f.engine->new_sequence(mem), stream, static_cast<int64_t>(stream.size()), nullptr);
  ASSERT_TRUE(s.wait_idle(std::chrono::seconds(30)));
  std::vector<int64_t> served;
  s.with_sequence(*st, [&](const Sequence& seq) { served = seq.policy->save_state(); });

  auto seq = f.engine->new_sequence(mem);
  FeedbackEval feed;
  const std::span<const int32_t> fed(stream.data(), stream.size() - 1);  // the last token waits
  for (size_t i = 0; i < fed.size(); i += 5) feed.eval(*f.engine, *seq, fed.subspan(i, std::min<size_t>(5, fed.size() - i)));
  EXPECT_EQ(served, seq->policy->save_state());
  s.stop();
}

TEST(Scheduler, InterruptStopsTheGenerationAndKeepsItsTokens) {
  Fixture f = tiny("sched-interrupt");
  Scheduler s(*f.engine, *f.tok, {.parallel = 2, .batch_tokens = 16, .chunk = 8}, nullptr);
  s.start();
  const auto start = random_tokens(5, 1);
  auto st = s.add_stream(f.engine->new_sequence(sink(4, 64, 8)), start, 5, nullptr);
  auto running = std::make_shared<Generation>(params(1000000, 0.8f, 1), 0);
  auto queued = std::make_shared<Generation>(params(10, 0.8f, 2), 0);
  s.generate(*st, running);
  s.generate(*st, queued);
  std::string piece;
  ASSERT_EQ(running->next(piece, std::chrono::seconds(30)), Generation::Poll::Text);
  EXPECT_EQ(s.stats(*st).state, "generating");
  EXPECT_EQ(s.stats(*st).generations_queued, 1);
  s.interrupt(*st);
  const GenerationResult r = running->wait();
  EXPECT_EQ(r.finish_reason, "interrupted");
  EXPECT_GT(r.completion_tokens, 0);
  EXPECT_LT(r.completion_tokens, 1000000);
  const GenerationResult q = queued->wait();
  EXPECT_EQ(q.finish_reason, "interrupted");
  EXPECT_EQ(q.completion_tokens, 0);
  ASSERT_TRUE(s.wait_idle(std::chrono::seconds(30)));
  EXPECT_EQ(s.stats(*st).tokens_total, 5 + r.completion_tokens);
  // The stream goes on: a new generation starts from where the interrupted one stopped.
  auto next = std::make_shared<Generation>(params(3, 0, 1), 0);
  s.generate(*st, next);
  EXPECT_EQ(next->wait().completion_tokens, 3);
  // Cancelling a finished generation changes nothing; removing the stream ends its work.
  next->cancel();
  auto last = std::make_shared<Generation>(params(1000000, 0.8f, 1), 0);
  s.generate(*st, last);
  s.remove_stream(st);
  EXPECT_EQ(last->wait().finish_reason, "cancelled");
  EXPECT_THROW(s.generate(*st, std::make_shared<Generation>(params(3, 0, 1), 0)), HttpError);
}

TEST(Scheduler, StopEndsEveryGeneration) {
  Fixture f = tiny("sched-stop-all");
  auto s = std::make_unique<Scheduler>(*f.engine, *f.tok, SchedulerOptions{.parallel = 1}, nullptr);
  s->start();
  auto a = s->submit(random_tokens(5, 1), full(64, 8), params(50, 0, 1));
  auto b = s->submit(random_tokens(5, 2), full(64, 8), params(50, 0, 1));
  s->stop();
  for (auto& g : {a, b}) {
    const GenerationResult r = g->wait();
    EXPECT_TRUE(r.finish_reason == "length" || (r.error && r.error->status() == 503)) << r.finish_reason;
  }
  EXPECT_THROW(s->submit(random_tokens(5, 3), full(64, 8), params(5, 0, 1)), HttpError);
}

}  // namespace
}  // namespace endless::server
