// The scheduler: one thread owns the Engine and runs every sequence the server holds through it,
// several per forward pass (continuous batching), while HTTP threads only enqueue work and read
// results.
//
// A *stream* is a sequence plus a queue of work: runs of tokens to add to it and generations to
// run at their place in the queue. Each step the scheduler walks the streams that have work in
// round-robin order, starting after the last one served, and gives each at most one part of the
// batch: one token for a stream that is generating, a bounded chunk of a prompt or of appended text
// for one that is prefilling. At most `parallel` streams and `batch_tokens` tokens go into a step,
// so a long prefill advances a chunk at a time while the others keep decoding.
//
// Results do not depend on what else is in the batch: every part's attention is its own, a token's
// row of a matrix product does not depend on the other rows (for quantized weights; see
// docs/server.md for F16/F32 weights), a prompt is cut into the same chunks whatever else runs,
// and every generation samples with its own seeded Sampler. A request made alone and the same
// request made among others give the same tokens.
//
// The last token of a stream is held back (not fed) until a generation needs the logits after it.
// So a generation can always start, also after a restart from a snapshot, and a reply's last token
// (or its end-of-generation token) is fed with whatever comes next.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/forward.h"
#include "runtime/sampler.h"
#include "server/http_error.h"
#include "tokenizer/tokenizer.h"

namespace endless::server {

class Metrics;

struct GenerationParams {
  SamplerConfig sampling;
  int max_tokens = 16;
  std::vector<std::string> stop;  // the text ends before the first of these
  bool ignore_eos = false;
};

struct GenerationResult {
  std::string text;           // everything emitted, stop string excluded
  std::string finish_reason;  // stop | length | interrupted | cancelled | error
  int prompt_tokens = 0;
  int completion_tokens = 0;
  std::vector<int32_t> tokens;  // the tokens added to the stream (stop string and EOS included)
  std::optional<HttpError> error;
  double ttft_s = 0;    // from submission to the first token
  double decode_s = 0;  // from the first token to the last
};

// One generation request, shared by the HTTP thread that waits on it and the scheduler.
class Generation {
 public:
  Generation(GenerationParams params, int prompt_tokens);

  const GenerationParams& params() const { return params_; }

  // Consumer side. next() waits up to `timeout` for text; Text: `text` holds all text that came
  // since the last call; Done: finished and all text delivered (see result()).
  enum class Poll { Text, Done, Timeout };
  Poll next(std::string& text, std::chrono::milliseconds timeout);
  GenerationResult wait();             // blocks until finished
  GenerationResult result() const;     // after Done
  void cancel(const std::string& reason = "cancelled");  // stops at the next step
  bool finished() const;

  // An owner that logs replies (a durable session) holds the generation before it finishes and
  // releases it once the reply is on disk: until then consumers do not hear that it ended, so a
  // reply a client has received in full is never one a crash can take back.
  void hold_for_disk();
  void release_from_disk();

  uint64_t id = 0;  // the session's number for it (0 for stateless requests)

 private:
  friend class Scheduler;
  void emit(const std::string& text);
  void finish(const std::string& reason, std::optional<HttpError> error = std::nullopt);
  std::string cancel_reason() const;

  const GenerationParams params_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string unread_;
  int polling_ = 0;  // callers waiting in next(): only they want a wake-up per piece of text
  GenerationResult result_;
  bool finished_ = false;
  bool held_for_disk_ = false;
  std::string cancel_;
  std::chrono::steady_clock::time_point submitted_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point first_token_at_;

  // Scheduler thread only.
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<StreamingDetokenizer> detok_;
  std::string held_;        // text that may be the start of a stop string
  bool started_ = false;    // first token sampled
  bool stopped_by_string_ = false;
  int32_t next_token_ = -1; // sampled and emitted, not yet fed
};

class Stream;

// What a stream's owner (a session) hears from the scheduler, on the scheduler thread. Handlers
// must be quick: they may read the stream's sequence (the forward pass is not running) but should
// hand slow work (disk) to another thread.
struct StreamOwner {
  virtual ~StreamOwner() = default;
  // A generation of this stream ends (for `reason`); its tokens are part of the stream from now on.
  virtual void generation_finished(Stream& s, const std::shared_ptr<Generation>& g, const std::string& reason) = 0;
  // Tokens of this stream were fed; nothing of it is generating when `idle`.
  virtual void fed(Stream& s, bool idle) = 0;
};

struct StreamStats {
  int64_t tokens_total = 0;    // tokens in the stream: fed, queued and generated
  int64_t tokens_fed = 0;      // through the model
  int64_t tokens_in_memory = 0;
  int64_t tokens_queued = 0;
  std::string policy;
  int64_t kv_bytes = 0;  // the keys and values held for it, allocated once
  std::string state;     // idle | prefilling | generating | queued
  int generations_queued = 0;
};

class Stream {
 public:
  Sequence& sequence() { return *seq_; }
  const Sequence& sequence() const { return *seq_; }
  StreamOwner* owner() const { return owner_; }

 private:
  friend class Scheduler;
  struct Item {
    std::vector<int32_t> tokens;  // tokens to feed (when gen is null)
    size_t fed = 0;
    std::shared_ptr<Generation> gen;
  };
  std::unique_ptr<Sequence> seq_;
  StreamOwner* owner_ = nullptr;
  bool temporary_ = false;  // a stateless request's: removed when its generation ends
  bool removed_ = false;
  std::deque<Item> queue_;
  std::deque<int32_t> recent_;  // last tokens of the stream, for the repetition penalty
  int32_t last_token_ = -1;     // last token of the stream (fed or not)
  int64_t total_ = 0;
  int64_t fed_ = 0, retained_ = 0;
  // For policies that score tokens by their NLL (sirllm): the logits of the last token fed, which
  // predict the next one, as FeedbackEval keeps them for run and stream.
  std::vector<float> last_logits_;
};

struct SchedulerOptions {
  int parallel = 4;         // most sequences in one forward pass
  int batch_tokens = 256;   // most tokens in one forward pass
  int chunk = 64;           // most prompt tokens one sequence adds per pass
  int max_waiting = 64;     // stateless requests waiting for a free slot; more: 429
};

struct SchedulerStats {
  int active = 0;        // streams with work
  int waiting = 0;       // stateless requests not yet admitted
  int generating = 0;
  int64_t steps = 0;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, const Tokenizer& tok, SchedulerOptions options, Metrics* metrics);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const SchedulerOptions& options() const { return opt_; }
  void start();
  void stop();  // finishes every generation with an error and joins the thread

  // A stateless request: a new sequence with `memory` for the prompt, freed when done. Throws
  // HttpError 429 when too many requests already wait for a slot.
  std::shared_ptr<Generation> submit(std::vector<int32_t> prompt, const MemoryConfig& memory,
                                     GenerationParams params);

  // Persistent streams. `tokens` are the stream's tokens not yet in `seq` (restored sessions).
  std::shared_ptr<Stream> add_stream(std::unique_ptr<Sequence> seq, std::vector<int32_t> tokens,
                                     int64_t total_tokens, StreamOwner* owner);
  void append(Stream& s, const std::vector<int32_t>& tokens);
  // Queues a generation at the end of the stream's queue.
  void generate(Stream& s, const std::shared_ptr<Generation>& g);
  // Stops the running generation and drops the queued ones (reason "interrupted").
  void interrupt(Stream& s);
  // Cancels the stream's generations and forgets it.
  void remove_stream(const std::shared_ptr<Stream>& s);
  StreamStats stats(const Stream& s) const;
  SchedulerStats stats() const;
  // Runs fn with the stream's sequence while no step runs (e.g. to copy it for a snapshot).
  void with_sequence(Stream& s, const std::function<void(const Sequence&)>& fn);
  // Blocks until no stream has tokens waiting to be fed, nothing generates, or the timeout.
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  struct Part {
    std::shared_ptr<Stream> stream;
    std::vector<int32_t> tokens;
    std::shared_ptr<Generation> sample_for;  // logits of the last token start/continue this
  };
  void loop();
  void feed_nll_locked(Stream& s, const std::vector<int32_t>& tokens, const float* rows);
  bool has_work_locked() const;
  bool plan_locked(Stream& s, int budget, Part& part);
  void after_step_locked(const std::vector<Part>& parts, const std::vector<float>& logits);
  void sample_locked(Stream& s, const std::shared_ptr<Generation>& g, std::span<const float> row);
  void finish_locked(Stream& s, const std::shared_ptr<Generation>& g, const std::string& reason,
                     std::optional<HttpError> error = std::nullopt);
  void start_generation_locked(Stream& s, Generation& g);
  void drop_cancelled_locked(Stream& s);
  void push_front_tokens_locked(Stream& s, int32_t token);
  void note_tokens_locked(Stream& s, const int32_t* t, size_t n);
  int64_t room_locked(const Stream& s) const;

  Engine& engine_;
  const Tokenizer& tok_;
  SchedulerOptions opt_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::mutex stop_mu_;
  std::condition_variable wake_, idle_cv_;
  std::vector<std::shared_ptr<Stream>> streams_;
  std::deque<std::shared_ptr<Stream>> waiting_;  // stateless, not yet admitted
  int n_temporary_ = 0;
  size_t rr_ = 0;
  bool stop_ = false;
  bool stepping_ = false;
  int64_t steps_ = 0;
  std::thread thread_;
};

}  // namespace endless::server
