// Endless sessions: streams that live on the server, that text is appended to forever, that the
// model answers whenever asked, in the bounded memory of a streaming cache policy, and that
// survive a crash.
//
// Each session has a write-ahead log, DIR/ID.wal (see wal.h), of JSON records:
//   {"t":"create","created":T,"cache":{...},"system":"...","tokens":[...]}   the stream's start
//   {"t":"append","text":"...","tokens":[...]}                                text appended
//   {"t":"gen","g":N}                                   a generation's place in the stream
//   {"t":"reply","g":N,"text":"...","tokens":[...],"finish_reason":"..."}    what it generated
// An append (and a creation) is acknowledged only once its record is synced. A reply is written
// when its generation ends and goes into the stream at its "gen" record's place (appends that
// arrive while the model generates are queued behind the reply). A generation cut off by a crash
// leaves no reply: the stream goes on as if it had not been asked.
//
// Every `snapshot_every` tokens, when no generation is running, the session's sequence (cache
// policy state, keys and values) is saved to DIR/ID.snap (save_sequence; atomic rename). On start,
// every session is restored: the snapshot covers the stream's first n_seen tokens, and only the
// tokens after those are fed again. Without a usable snapshot the whole stream is fed again.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "model/forward.h"
#include "server/request.h"
#include "server/scheduler.h"
#include "server/wal.h"
#include "tokenizer/tokenizer.h"

namespace endless::server {

struct SessionsOptions {
  std::string dir;             // logs and snapshots
  bool durable = true;         // false: nothing is synced or snapshotted, nothing restored
  int max_sessions = 64;
  int64_t snapshot_every = 1024;   // tokens fed between snapshots
  int max_generations = 4;         // generations queued or running per session
  int64_t max_queued_tokens = 1 << 18;  // appended tokens not yet read, per session (then 429)
  int64_t max_cache_tokens = 65536;  // largest window or context a session may ask for
  MemoryConfig memory;             // cache of a session that does not name one
  Limits limits;
};

// One thread that runs disk work in order (replies, snapshots, deletions).
class DiskWriter {
 public:
  DiskWriter();
  ~DiskWriter();
  void post(std::function<void()> task);
  void drain();  // waits until every task posted so far has run
  void stop();

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::function<void()>> tasks_;
  uint64_t posted_ = 0, done_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

class Sessions;

class Session : public StreamOwner, public std::enable_shared_from_this<Session> {
 public:
  void generation_finished(Stream& s, const std::shared_ptr<Generation>& g, const std::string& reason) override;
  void fed(Stream& s, bool idle) override;

 private:
  friend class Sessions;
  Sessions* sessions_ = nullptr;
  std::string id_;
  int64_t created_ = 0;
  MemoryConfig memory_;
  std::mutex mu_;  // log order: a record is written and its work queued under it
  std::unique_ptr<Wal> wal_;
  std::shared_ptr<Stream> stream_;
  uint64_t next_gen_ = 1;
  std::atomic<bool> deleted_{false};
  std::atomic<bool> broken_{false};  // a disk write failed: no more snapshots
  int64_t snapshot_fed_ = 0;         // scheduler thread only
};

class Sessions {
 public:
  Sessions(Engine& engine, const Tokenizer& tok, Scheduler& scheduler, SessionsOptions options);
  ~Sessions();
  Sessions(const Sessions&) = delete;
  Sessions& operator=(const Sessions&) = delete;

  // Restores every session found in the directory; returns how many. Sessions that cannot be
  // restored are reported on stderr and left on disk.
  int restore();

  Json create(const Json& body);
  Json append(const std::string& id, const Json& body);
  // Queues a generation (after the optional prompt); the caller waits on it or streams it.
  std::shared_ptr<Generation> generate(const std::string& id, const Json& body);
  Json info(const std::string& id);
  Json transcript(const std::string& id);
  Json remove(const std::string& id);
  Json list();
  int count() const;

  // Ends every session's work cleanly: replies logged, a last snapshot. Call after the
  // scheduler has stopped.
  void shutdown();

  // Session ids: 1 to 64 of [A-Za-z0-9_-].
  static bool valid_id(const std::string& id);

 private:
  friend class Session;
  std::shared_ptr<Session> find(const std::string& id);
  std::string wal_path(const std::string& id) const;
  std::string snap_path(const std::string& id) const;
  std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special) const;
  MemoryConfig memory_from(const Json& cache) const;
  Json info_locked(Session& s);
  void restore_one(const std::string& id);
  void snapshot(Session& s, const Sequence& seq);

  Engine& engine_;
  const Tokenizer& tok_;
  Scheduler& scheduler_;
  SessionsOptions opt_;
  DiskWriter writer_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
};

// The stream a session's log describes: its tokens in stream order, replies at their place.
struct SessionLog {
  Json create;
  struct Entry {
    std::string type;  // system | append | reply
    std::string text;
    std::vector<int32_t> tokens;
    std::string finish_reason;
  };
  std::vector<Entry> entries;
  uint64_t max_gen = 0;
  std::vector<int32_t> tokens() const;
};
// Throws Error for records that are not a session log.
SessionLog parse_session_log(const std::vector<std::string>& records);

}  // namespace endless::server
