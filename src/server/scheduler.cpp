#include "server/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "runtime/perplexity.h"
#include "server/metrics.h"

namespace endless::server {

using clock_type = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Generation

Generation::Generation(GenerationParams params, int prompt_tokens) : params_(std::move(params)) {
  result_.prompt_tokens = prompt_tokens;
}

Generation::Poll Generation::next(std::string& text, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const auto done = [&] { return finished_ && !held_for_disk_; };
  ++polling_;
  cv_.wait_for(lock, timeout, [&] { return !unread_.empty() || done(); });
  --polling_;
  if (!unread_.empty()) {
    text = std::move(unread_);
    unread_.clear();
    return Poll::Text;
  }
  return done() ? Poll::Done : Poll::Timeout;
}

GenerationResult Generation::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return finished_ && !held_for_disk_; });
  return result_;
}

void Generation::hold_for_disk() {
  std::lock_guard lock(mu_);
  held_for_disk_ = true;
}

void Generation::release_from_disk() {
  std::lock_guard lock(mu_);
  held_for_disk_ = false;
  cv_.notify_all();
}

GenerationResult Generation::result() const {
  std::lock_guard lock(mu_);
  return result_;
}

void Generation::cancel(const std::string& reason) {
  std::lock_guard lock(mu_);
  if (cancel_.empty() && !finished_) cancel_ = reason;
}

bool Generation::finished() const {
  std::lock_guard lock(mu_);
  return finished_;
}

std::string Generation::cancel_reason() const {
  std::lock_guard lock(mu_);
  return cancel_;
}

void Generation::emit(const std::string& text) {
  if (text.empty()) return;
  std::lock_guard lock(mu_);
  unread_ += text;
  result_.text += text;
  // A caller in wait() wants only the end: waking it for every token (eight sessions decoding,
  // eight wake-ups a step) would take a core from the forward pass for nothing.
  if (polling_ > 0) cv_.notify_all();
}

void Generation::finish(const std::string& reason, std::optional<HttpError> error) {
  std::lock_guard lock(mu_);
  if (!result_.tokens.empty())
    result_.decode_s = std::chrono::duration<double>(clock_type::now() - first_token_at_).count();
  result_.finish_reason = reason;
  result_.error = std::move(error);
  finished_ = true;
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Scheduler

namespace {

// The longest k < s.size() such that `text` ends with the first k bytes of s.
size_t partial_suffix(const std::string& text, const std::string& s) {
  for (size_t k = std::min(text.size(), s.size() - 1); k > 0; --k)
    if (text.compare(text.size() - k, k, s, 0, k) == 0) return k;
  return 0;
}

}  // namespace

Scheduler::Scheduler(Engine& engine, const Tokenizer& tok, SchedulerOptions options, Metrics* metrics)
    : engine_(engine), tok_(tok), opt_(options), metrics_(metrics) {
  if (opt_.parallel < 1) fail("--parallel must be at least 1");
  if (opt_.batch_tokens < 1) fail("the batch size must be at least 1");
  if (opt_.chunk < 1) fail("the prefill chunk must be at least 1");
  opt_.chunk = std::min(opt_.chunk, opt_.batch_tokens);
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { loop(); });
}

void Scheduler::stop() {
  std::lock_guard stopping(stop_mu_);  // callers on several threads: one joins, the others wait
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  // Every generation ends now; a started one's tokens stay in its stream (its owner logs them).
  const auto streams = streams_;
  for (const auto& s : streams) {
    std::vector<std::shared_ptr<Generation>> gens;
    for (const auto& item : s->queue_)
      if (item.gen) gens.push_back(item.gen);
    for (const auto& g : gens) finish_locked(*s, g, "error", HttpError(503, "the server is shutting down"));
  }
  for (const auto& s : waiting_)
    for (const auto& item : s->queue_)
      if (item.gen && !item.gen->finished()) item.gen->finish("error", HttpError(503, "the server is shutting down"));
  waiting_.clear();
  idle_cv_.notify_all();
}

std::shared_ptr<Generation> Scheduler::submit(std::vector<int32_t> prompt, const MemoryConfig& memory,
                                              GenerationParams params) {
  if (prompt.empty()) bad_request("the prompt is empty");
  auto g = std::make_shared<Generation>(std::move(params), static_cast<int>(prompt.size()));
  auto s = std::make_shared<Stream>();
  s->temporary_ = true;
  s->total_ = static_cast<int64_t>(prompt.size());
  Stream::Item t;
  t.tokens = std::move(prompt);
  s->queue_.push_back(std::move(t));
  Stream::Item gi;
  gi.gen = g;
  s->queue_.push_back(std::move(gi));
  s->seq_ = nullptr;
  {
    std::lock_guard lock(mu_);
    if (stop_) throw HttpError(503, "the server is shutting down");
    if (static_cast<int>(waiting_.size()) >= opt_.max_waiting)
      throw HttpError(429, cat("too many requests: ", waiting_.size(),
                               " are already waiting for a free slot; retry later"),
                      "queue_full");
    // The sequence is allocated when the request is admitted, so memory stays bounded by
    // --parallel; until then its configuration waits in a placeholder.
    auto placeholder = std::make_unique<Sequence>();
    placeholder->config = memory;
    s->seq_ = std::move(placeholder);
    waiting_.push_back(s);
  }
  wake_.notify_all();
  return g;
}

std::shared_ptr<Stream> Scheduler::add_stream(std::unique_ptr<Sequence> seq, std::vector<int32_t> tokens,
                                              int64_t total_tokens, StreamOwner* owner) {
  auto s = std::make_shared<Stream>();
  s->seq_ = std::move(seq);
  s->owner_ = owner;
  s->total_ = total_tokens;
  s->fed_ = s->seq_->policy->n_seen();
  s->retained_ = s->seq_->policy->retained();
  if (!tokens.empty()) {
    Stream::Item t;
    t.tokens = std::move(tokens);
    s->queue_.push_back(std::move(t));
  }
  {
    std::lock_guard lock(mu_);
    streams_.push_back(s);
  }
  wake_.notify_all();
  return s;
}

void Scheduler::append(Stream& s, const std::vector<int32_t>& tokens) {
  if (tokens.empty()) return;
  {
    std::lock_guard lock(mu_);
    if (!s.queue_.empty() && !s.queue_.back().gen) {
      auto& back = s.queue_.back().tokens;
      back.insert(back.end(), tokens.begin(), tokens.end());
    } else {
      Stream::Item t;
      t.tokens = tokens;
      s.queue_.push_back(std::move(t));
    }
    s.total_ += static_cast<int64_t>(tokens.size());
  }
  wake_.notify_all();
}

void Scheduler::generate(Stream& s, const std::shared_ptr<Generation>& g) {
  {
    std::lock_guard lock(mu_);
    if (stop_) throw HttpError(503, "the server is shutting down");
    if (s.removed_) throw HttpError(404, "the stream is gone");
    Stream::Item gi;
    gi.gen = g;
    s.queue_.push_back(std::move(gi));
  }
  wake_.notify_all();
}

void Scheduler::interrupt(Stream& s) {
  {
    std::lock_guard lock(mu_);
    for (auto& item : s.queue_)
      if (item.gen) item.gen->cancel("interrupted");
  }
  wake_.notify_all();
}

void Scheduler::remove_stream(const std::shared_ptr<Stream>& s) {
  std::lock_guard lock(mu_);
  s->removed_ = true;
  for (auto& item : s->queue_)
    if (item.gen && !item.gen->finished()) item.gen->finish("cancelled");
  s->queue_.clear();
  std::erase(streams_, s);
  std::erase(waiting_, s);
  idle_cv_.notify_all();
}

StreamStats Scheduler::stats(const Stream& s) const {
  std::lock_guard lock(mu_);
  StreamStats st;
  st.tokens_total = s.total_;
  st.tokens_fed = s.fed_;
  st.tokens_in_memory = s.retained_;
  st.policy = s.seq_->policy ? s.seq_->policy->describe() : s.seq_->config.policy;
  st.kv_bytes = static_cast<int64_t>(s.seq_->store.bytes());
  bool generating = false, prefilling = false;
  for (size_t i = 0; i < s.queue_.size(); ++i) {
    const auto& item = s.queue_[i];
    if (item.gen) {
      if (item.gen->started_) generating = true;
      else ++st.generations_queued;
    } else {
      st.tokens_queued += static_cast<int64_t>(item.tokens.size() - item.fed);
      const bool held_back_only = i + 1 == s.queue_.size() && item.tokens.size() - item.fed <= 1;
      if (!held_back_only) prefilling = true;
    }
  }
  st.state = generating ? "generating" : prefilling ? "prefilling" : st.generations_queued ? "queued" : "idle";
  return st;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mu_);
  SchedulerStats st;
  st.waiting = static_cast<int>(waiting_.size());
  st.steps = steps_;
  for (const auto& s : streams_) {
    Part p;
    if (const_cast<Scheduler*>(this)->plan_locked(*s, opt_.batch_tokens, p)) ++st.active;
    for (const auto& item : s->queue_)
      if (item.gen && item.gen->started_) ++st.generating;
  }
  return st;
}

void Scheduler::with_sequence(Stream& s, const std::function<void(const Sequence&)>& fn) {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return !stepping_; });
  fn(*s.seq_);
}

bool Scheduler::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] {
    if (stepping_) return false;
    if (!waiting_.empty()) return false;
    for (const auto& s : streams_) {
      Part p;
      if (plan_locked(*s, opt_.batch_tokens, p)) return false;
      for (const auto& item : s->queue_)
        if (item.gen) return false;
    }
    return true;
  });
}

int64_t Scheduler::room_locked(const Stream& s) const {
  if (s.seq_->config.policy == "full") return s.seq_->config.n_ctx - s.total_;
  return std::numeric_limits<int64_t>::max();
}

// Decides what the stream contributes to the next step, without changing it.
bool Scheduler::plan_locked(Stream& s, int budget, Part& part) {
  if (s.removed_ || s.queue_.empty() || budget <= 0) return false;
  Stream::Item& front = s.queue_.front();
  if (front.gen) {
    Generation& g = *front.gen;
    if (!g.started_ || g.next_token_ < 0) return false;  // settled by settle_locked
    part.tokens.assign(1, g.next_token_);
    part.sample_for = front.gen;
    return true;
  }
  const size_t remaining = front.tokens.size() - front.fed;
  const bool gen_next = s.queue_.size() > 1 && s.queue_[1].gen;
  // The stream's last token waits for the generation that needs the logits after it.
  const size_t feedable = gen_next ? remaining : remaining - 1;
  if (feedable == 0) return false;
  // A chunk is never cut short to fit what is left of the step's budget (the stream waits for the
  // next step instead): where chunks end does not depend on what else runs, and a part's tokens
  // decide its arithmetic (attention over the cells its tokens see).
  const size_t limit = static_cast<size_t>(std::min(opt_.chunk, std::max(1, s.seq_->config.max_batch)));
  const size_t n = std::min(feedable, limit);
  if (n > static_cast<size_t>(budget)) return false;
  part.tokens.assign(front.tokens.begin() + static_cast<ptrdiff_t>(front.fed),
                     front.tokens.begin() + static_cast<ptrdiff_t>(front.fed + n));
  if (gen_next && n == remaining) part.sample_for = s.queue_[1].gen;
  return true;
}

// Finishes cancelled generations, drops queued ones that were cancelled, and merges the token
// runs that meet when a generation between them leaves.
void Scheduler::drop_cancelled_locked(Stream& s) {
  bool again = true;
  while (again) {
    again = false;
    for (size_t i = 0; i < s.queue_.size(); ++i) {
      auto& item = s.queue_[i];
      if (!item.gen) continue;
      const std::string reason = item.gen->cancel_reason();
      if (!reason.empty()) {
        finish_locked(s, std::shared_ptr<Generation>(item.gen), reason);
        again = true;
        break;
      }
      // A generation with nothing before it has no logits to start from: only an empty stream.
      if (i == 0 && !item.gen->started_) {
        finish_locked(s, std::shared_ptr<Generation>(item.gen), "error",
                      HttpError(400, "nothing to generate from: the stream is empty"));
        again = true;
        break;
      }
    }
  }
}

void Scheduler::push_front_tokens_locked(Stream& s, int32_t token) {
  if (!s.queue_.empty() && !s.queue_.front().gen) {
    auto& front = s.queue_.front();
    // Nothing of a token run behind a generation has been fed yet.
    front.tokens.insert(front.tokens.begin() + static_cast<ptrdiff_t>(front.fed), token);
  } else {
    Stream::Item t;
    t.tokens.assign(1, token);
    s.queue_.push_front(std::move(t));
  }
}

void Scheduler::note_tokens_locked(Stream& s, const int32_t* t, size_t n) {
  constexpr size_t kRecent = 256;
  for (size_t i = 0; i < n; ++i) {
    s.recent_.push_back(t[i]);
    if (s.recent_.size() > kRecent) s.recent_.pop_front();
  }
}

void Scheduler::start_generation_locked(Stream& s, Generation& g) {
  g.started_ = true;
  g.sampler_ = std::make_unique<Sampler>(g.params_.sampling);
  const size_t n = std::min<size_t>(s.recent_.size(), static_cast<size_t>(g.params_.sampling.repeat_last_n));
  for (size_t i = s.recent_.size() - n; i < s.recent_.size(); ++i) g.sampler_->accept(s.recent_[i]);
  g.detok_ = std::make_unique<StreamingDetokenizer>(tok_);
  // The text goes on from the stream's last token: a SentencePiece word-start space is kept
  // (after BOS alone, the first piece's space is dropped, as at the start of any text).
  if (!s.recent_.empty()) (void)g.detok_->push(s.recent_.back());
}

void Scheduler::sample_locked(Stream& s, const std::shared_ptr<Generation>& gp,
                              std::span<const float> row) {
  Generation& g = *gp;
  if (!g.started_) start_generation_locked(s, g);
  const int32_t t = g.sampler_->sample(row);
  g.sampler_->accept(t);
  {
    std::lock_guard lock(g.mu_);
    if (g.result_.tokens.empty()) {
      g.first_token_at_ = clock_type::now();
      g.result_.ttft_s = std::chrono::duration<double>(g.first_token_at_ - g.submitted_).count();
    }
    g.result_.tokens.push_back(t);
    g.result_.completion_tokens = static_cast<int>(g.result_.tokens.size());
  }
  if (g.result_.tokens.size() == 1 && metrics_) metrics_->ttft(g.result_.ttft_s);
  if (metrics_) metrics_->tokens_out(1);
  s.total_ += 1;
  g.next_token_ = t;
  if (!g.params_.ignore_eos && tok_.is_eog(t)) {
    finish_locked(s, gp, "stop");
    return;
  }
  g.held_ += g.detok_->push(t);
  size_t cut = std::string::npos;
  for (const auto& stop : g.params_.stop) {
    const size_t pos = g.held_.find(stop);
    if (pos != std::string::npos && (cut == std::string::npos || pos < cut)) cut = pos;
  }
  if (cut != std::string::npos) {
    g.emit(g.held_.substr(0, cut));
    g.held_.clear();
    g.stopped_by_string_ = true;
    finish_locked(s, gp, "stop");
    return;
  }
  size_t hold = 0;
  for (const auto& stop : g.params_.stop) hold = std::max(hold, partial_suffix(g.held_, stop));
  g.emit(g.held_.substr(0, g.held_.size() - hold));
  g.held_.erase(0, g.held_.size() - hold);
  if (static_cast<int>(g.result_.tokens.size()) >= g.params_.max_tokens || room_locked(s) < 1)
    finish_locked(s, gp, "length");
}

void Scheduler::finish_locked(Stream& s, const std::shared_ptr<Generation>& g, const std::string& reason,
                              std::optional<HttpError> error) {
  auto it = std::find_if(s.queue_.begin(), s.queue_.end(), [&](const auto& item) { return item.gen == g; });
  if (it == s.queue_.end()) return;
  const bool was_front = it == s.queue_.begin();
  s.queue_.erase(it);
  // Merge the token runs that met.
  for (size_t i = 0; i + 1 < s.queue_.size(); ++i) {
    auto& a = s.queue_[i];
    auto& b = s.queue_[i + 1];
    if (!a.gen && !b.gen) {
      a.tokens.insert(a.tokens.end(), b.tokens.begin() + static_cast<ptrdiff_t>(b.fed), b.tokens.end());
      s.queue_.erase(s.queue_.begin() + static_cast<ptrdiff_t>(i + 1));
      --i;
    }
  }
  if (g->started_) {
    // The last sampled token (or end-of-generation token) is part of the stream, not yet fed.
    if (was_front && g->next_token_ >= 0) push_front_tokens_locked(s, g->next_token_);
    g->next_token_ = -1;
    if (!g->stopped_by_string_) {
      std::string tail = g->held_ + g->detok_->finish();
      g->held_.clear();
      size_t cut = std::string::npos;
      for (const auto& stop : g->params_.stop) cut = std::min(cut, tail.find(stop));
      g->emit(cut == std::string::npos ? tail : tail.substr(0, cut));
    }
  }
  // The owner logs the reply before anyone waiting on the generation hears that it ended.
  if (s.owner_ && g->started_ && !s.removed_) s.owner_->generation_finished(s, g, reason);
  g->finish(reason, std::move(error));
  if (metrics_) metrics_->generation_finished(reason);
  if (s.temporary_) {
    s.removed_ = true;
    s.queue_.clear();
    auto self = std::find_if(streams_.begin(), streams_.end(), [&](const auto& p) { return p.get() == &s; });
    if (self != streams_.end()) {
      streams_.erase(self);
      --n_temporary_;
    }
  }
}

// The NLL of every token just fed, from the logits that predicted it (the previous step's last
// row for the first), handed to the policy: what FeedbackEval does outside the server.
void Scheduler::feed_nll_locked(Stream& s, const std::vector<int32_t>& tokens, const float* rows) {
  const size_t V = static_cast<size_t>(engine_.config().n_vocab);
  MemoryPolicy& policy = *s.seq_->policy;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t first = policy.n_seen() - n;  // the step has counted them already
  if (s.last_logits_.size() == V) {
    const float nll = static_cast<float>(token_nll(s.last_logits_, tokens[0]));
    policy.observe_nll(first, &nll, 1);
  }
  std::vector<float> nll;
  for (int64_t j = 0; j + 1 < n; ++j)
    nll.push_back(static_cast<float>(token_nll(std::span(rows + j * V, V), tokens[j + 1])));
  if (!nll.empty()) policy.observe_nll(first + 1, nll.data(), static_cast<int>(nll.size()));
  s.last_logits_.assign(rows + (n - 1) * V, rows + n * V);
}

void Scheduler::after_step_locked(const std::vector<Part>& parts, const std::vector<float>& logits) {
  const int64_t n_vocab = engine_.config().n_vocab;
  size_t first_row = 0;  // a part has one row of logits, or one per token when its policy wants NLL
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& p = parts[i];
    Stream& s = *p.stream;
    const bool every_row = s.seq_->policy->wants_nll();
    const size_t n_rows = every_row ? p.tokens.size() : 1;
    const float* rows = logits.data() + first_row * n_vocab;
    first_row += n_rows;
    if (s.removed_) continue;
    if (every_row) feed_nll_locked(s, p.tokens, rows);
    const std::span<const float> row(rows + (n_rows - 1) * n_vocab, static_cast<size_t>(n_vocab));
    s.fed_ += static_cast<int64_t>(p.tokens.size());
    s.retained_ = s.seq_->policy->retained();
    note_tokens_locked(s, p.tokens.data(), p.tokens.size());
    Stream::Item& front = s.queue_.front();
    if (front.gen) {
      front.gen->next_token_ = -1;
      sample_locked(s, p.sample_for, row);
    } else {
      front.fed += p.tokens.size();
      if (front.fed == front.tokens.size()) s.queue_.pop_front();
      if (metrics_) metrics_->tokens_in(static_cast<int64_t>(p.tokens.size()));
      if (p.sample_for) sample_locked(s, p.sample_for, row);
    }
    if (s.owner_ && !s.removed_) {
      const bool idle = s.queue_.empty() || !(s.queue_.front().gen && s.queue_.front().gen->started_);
      s.owner_->fed(s, idle);
    }
  }
}

void Scheduler::loop() {
  std::vector<Part> parts;
  std::vector<BatchPart> batch;
  std::unique_lock lock(mu_);
  auto settle_all = [&] {
    // Admit waiting stateless requests while slots are free.
    while (!waiting_.empty() && n_temporary_ < opt_.parallel) {
      auto s = waiting_.front();
      waiting_.pop_front();
      const MemoryConfig mem = s->seq_->config;
      try {
        s->seq_ = engine_.new_sequence(mem);
      } catch (const std::exception& e) {
        for (auto& item : s->queue_)
          if (item.gen) item.gen->finish("error", HttpError(500, cat("cannot allocate the sequence: ", e.what())));
        continue;
      }
      ++n_temporary_;
      streams_.push_back(s);
    }
    for (size_t i = 0; i < streams_.size(); ++i) {
      auto keep = streams_[i];  // finish_locked may erase it
      drop_cancelled_locked(*keep);
    }
  };
  auto has_work = [&] {
    if (stop_) return true;
    settle_all();
    for (const auto& s : streams_) {
      Part p;
      if (plan_locked(*s, opt_.batch_tokens, p)) return true;
    }
    return false;
  };
  while (true) {
    wake_.wait_for(lock, std::chrono::milliseconds(50), has_work);
    if (stop_) break;
    parts.clear();
    const size_t n = streams_.size();
    int budget = opt_.batch_tokens;
    size_t last = rr_;
    for (size_t k = 0; k < n && static_cast<int>(parts.size()) < opt_.parallel && budget > 0; ++k) {
      const size_t idx = (rr_ + k) % n;
      Part p;
      if (plan_locked(*streams_[idx], budget, p)) {
        budget -= static_cast<int>(p.tokens.size());
        p.stream = streams_[idx];
        parts.push_back(std::move(p));
        last = idx;
      }
    }
    if (parts.empty()) continue;
    rr_ = n ? (last + 1) % n : 0;
    stepping_ = true;
    lock.unlock();

    batch.clear();
    int n_tokens = 0;
    for (const auto& p : parts) {
      // A policy that scores tokens by their NLL (sirllm) needs every token's logits.
      batch.push_back({p.stream->seq_.get(), p.tokens, p.stream->seq_->policy->wants_nll()});
      n_tokens += static_cast<int>(p.tokens.size());
    }
    const auto t0 = clock_type::now();
    const std::vector<float>* logits = nullptr;
    std::string failure;
    try {
      logits = &engine_.forward(batch);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();

    lock.lock();
    stepping_ = false;
    ++steps_;
    if (metrics_) metrics_->step(static_cast<int>(parts.size()), n_tokens, seconds);
    if (failure.empty()) {
      after_step_locked(parts, *logits);
    } else {
      std::fprintf(stderr, "endless serve: forward pass failed: %s\n", failure.c_str());
      for (auto& p : parts) {
        std::vector<std::shared_ptr<Generation>> gens;
        for (auto& item : p.stream->queue_)
          if (item.gen) gens.push_back(item.gen);
        for (auto& g : gens) finish_locked(*p.stream, g, "error", HttpError(500, cat("the forward pass failed: ", failure)));
      }
    }
    idle_cv_.notify_all();
  }
}

}  // namespace endless::server
