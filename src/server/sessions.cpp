#include "server/sessions.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <set>

#include "model/snapshot.h"

namespace endless::server {

namespace fs = std::filesystem;

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Json cache_json(const MemoryConfig& m) {
  return Json{{"policy", m.policy},
              {"ctx", m.n_ctx},
              {"sink", m.n_sink},
              {"window", m.window},
              {"keep", m.n_keep},
              {"type", m.kv_type == TensorType::F32 ? "f32" : "f16"}};
}

std::vector<int32_t> tokens_of(const Json& j) {
  if (!j.is_array()) fail("session log: tokens are not an array");
  std::vector<int32_t> out;
  out.reserve(j.size());
  for (const auto& t : j) {
    if (!t.is_number_integer()) fail("session log: a token is not an integer");
    out.push_back(t.get<int32_t>());
  }
  return out;
}

std::string text_of(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) fail("session log: '", key, "' is not a string");
  return it->get<std::string>();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// DiskWriter

DiskWriter::DiskWriter() : thread_([this] { loop(); }) {}

DiskWriter::~DiskWriter() { stop(); }

void DiskWriter::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
    ++posted_;
  }
  cv_.notify_all();
}

void DiskWriter::drain() {
  std::unique_lock lock(mu_);
  const uint64_t target = posted_;
  done_cv_.wait(lock, [&] { return done_ >= target || !thread_.joinable(); });
}

void DiskWriter::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DiskWriter::loop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
    if (tasks_.empty()) break;  // stop_ and nothing left
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    try {
      task();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "endless serve: disk write failed: %s\n", e.what());
    }
    lock.lock();
    ++done_;
    done_cv_.notify_all();
  }
}

// ---------------------------------------------------------------------------------------------
// The log

std::vector<int32_t> SessionLog::tokens() const {
  std::vector<int32_t> all;
  for (const auto& e : entries) all.insert(all.end(), e.tokens.begin(), e.tokens.end());
  return all;
}

SessionLog parse_session_log(const std::vector<std::string>& records) {
  SessionLog log;
  std::map<uint64_t, size_t> places;  // generation -> its entry
  for (size_t i = 0; i < records.size(); ++i) {
    Json r;
    try {
      r = Json::parse(records[i]);
    } catch (const std::exception&) {
      fail("session log: record ", i, " is not JSON");
    }
    if (!r.is_object()) fail("session log: record ", i, " is not an object");
    const std::string t = text_of(r, "t");
    if (i == 0) {
      if (t != "create") fail("session log: the first record is not 'create'");
      log.create = r;
      log.entries.push_back({"system", text_of(r, "system"), tokens_of(r.at("tokens")), {}});
      continue;
    }
    if (t == "append") {
      log.entries.push_back({"append", text_of(r, "text"), tokens_of(r.at("tokens")), {}});
    } else if (t == "gen") {
      const uint64_t g = r.at("g").get<uint64_t>();
      log.max_gen = std::max(log.max_gen, g);
      places[g] = log.entries.size();
      log.entries.push_back({"reply", {}, {}, {}});
    } else if (t == "reply") {
      const uint64_t g = r.at("g").get<uint64_t>();
      auto it = places.find(g);
      if (it == places.end()) continue;  // its place was never logged
      auto& e = log.entries[it->second];
      e.text = text_of(r, "text");
      e.tokens = tokens_of(r.at("tokens"));
      e.finish_reason = text_of(r, "finish_reason");
    } else {
      fail("session log: record ", i, " has unknown type '", t, "'");
    }
  }
  if (records.empty()) fail("session log: no records");
  // Generations that never replied (cut off by a crash, or cancelled before they began).
  std::erase_if(log.entries, [](const auto& e) { return e.type == "reply" && e.tokens.empty(); });
  return log;
}

// ---------------------------------------------------------------------------------------------
// Session (scheduler-thread callbacks: quick, no session lock)

void Session::generation_finished(Stream&, const std::shared_ptr<Generation>& g, const std::string& reason) {
  if (!wal_) return;
  const GenerationResult r = g->result();  // text and tokens are complete; it is not finished yet
  Json rec = {{"t", "reply"}, {"g", g->id}, {"text", r.text}, {"tokens", r.tokens}, {"finish_reason", reason}};
  auto self = shared_from_this();
  // The generation is released when the task is done with, whether it ran (the reply is synced,
  // or the write failed) or was dropped: a waiting client never hangs on it.
  struct DiskHold {
    std::shared_ptr<Generation> g;
    ~DiskHold() {
      if (g) g->release_from_disk();
    }
  };
  auto hold = std::make_shared<DiskHold>();
  hold->g = g;
  g->hold_for_disk();
  sessions_->writer_.post([self, hold, payload = rec.dump()] {
    std::lock_guard lock(self->mu_);
    if (self->deleted_) return;
    try {
      self->wal_->append(payload);
      self->wal_->sync();
    } catch (...) {
      self->broken_ = true;
      throw;
    }
  });
}

void Session::fed(Stream& s, bool idle) {
  Sessions& ss = *sessions_;
  if (!idle || !ss.opt_.durable || broken_ || deleted_) return;
  const int64_t n = s.sequence().policy->n_seen();
  if (n - snapshot_fed_ < ss.opt_.snapshot_every) return;
  snapshot_fed_ = n;
  ss.snapshot(*this, s.sequence());
}

// ---------------------------------------------------------------------------------------------
// Sessions

Sessions::Sessions(Engine& engine, const Tokenizer& tok, Scheduler& scheduler, SessionsOptions options)
    : engine_(engine), tok_(tok), scheduler_(scheduler), opt_(std::move(options)) {
  if (opt_.dir.empty()) fail("sessions need a directory");
  fs::create_directories(opt_.dir);
  if (opt_.snapshot_every < 1) fail("the snapshot interval must be at least one token");
}

Sessions::~Sessions() { writer_.stop(); }

bool Sessions::valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

std::string Sessions::wal_path(const std::string& id) const { return (fs::path(opt_.dir) / (id + ".wal")).string(); }
std::string Sessions::snap_path(const std::string& id) const { return (fs::path(opt_.dir) / (id + ".snap")).string(); }

std::vector<int32_t> Sessions::encode(const std::string& text, bool add_special, bool parse_special) const {
  return tok_.encode(text, add_special, parse_special);
}

std::shared_ptr<Session> Sessions::find(const std::string& id) {
  if (!valid_id(id))
    throw HttpError(400, "invalid session id: 1 to 64 letters, digits, '_' or '-'", "invalid_session_id");
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) throw HttpError(404, cat("no session '", id, "'"), "session_not_found");
  return it->second;
}

int Sessions::count() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(sessions_.size());
}

MemoryConfig Sessions::memory_from(const Json& cache) const {
  MemoryConfig m = opt_.memory;
  if (cache.is_null()) return m;
  if (!cache.is_object()) throw HttpError(400, "'cache' must be an object", "invalid_type", "cache");
  if (auto p = get_string(cache, "policy")) {
    const auto& names = policy_names();
    if (std::find(names.begin(), names.end(), *p) == names.end())
    {
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      throw HttpError(400, cat("unknown cache policy '", *p, "' (known: ", known, ")"), "invalid_value",
                      "cache.policy");
    }
    m.policy = *p;
  }
  const int64_t max = opt_.max_cache_tokens;
  if (auto v = get_int(cache, "sink", 0, max)) m.n_sink = static_cast<int>(*v);
  if (auto v = get_int(cache, "window", 1, max)) m.window = *v;
  if (auto v = get_int(cache, "ctx", 1, max)) m.n_ctx = *v;
  if (auto v = get_int(cache, "keep", 0, max)) m.n_keep = *v;
  if (auto t = get_string(cache, "type")) {
    if (*t != "f16" && *t != "f32") throw HttpError(400, "'cache.type' must be \"f16\" or \"f32\"", "invalid_value", "cache.type");
    m.kv_type = *t == "f32" ? TensorType::F32 : TensorType::F16;
  }
  if ((m.policy == "full" || m.policy == "shift") && m.n_ctx > max)
    throw HttpError(400, cat("the context may be at most ", max, " tokens"), "invalid_value", "cache.ctx");
  try {
    (void)make_policy(m);
  } catch (const Error& e) {
    throw HttpError(400, e.what(), "invalid_value", "cache");
  }
  return m;
}

Json Sessions::create(const Json& body) {
  std::string id;
  if (auto given = get_string(body, "id")) {
    if (!valid_id(*given))
      throw HttpError(400, "invalid session id: 1 to 64 letters, digits, '_' or '-'", "invalid_session_id", "id");
    id = *given;
  } else {
    id = random_id("sess_");
  }
  const std::string system = get_string(body, "system").value_or("");
  const bool special = get_bool(body, "special").value_or(false);
  const MemoryConfig memory = memory_from(body.contains("cache") ? body.at("cache") : Json());
  std::vector<int32_t> tokens = encode(system, /*add_special=*/true, special);
  if (memory.policy == "full" && static_cast<int64_t>(tokens.size()) > memory.n_ctx)
    throw HttpError(400, cat("the system prompt has ", tokens.size(), " tokens but the context holds ", memory.n_ctx),
                    "context_length_exceeded");

  auto s = std::make_shared<Session>();
  s->sessions_ = this;
  s->id_ = id;
  s->created_ = unix_now();
  s->memory_ = memory;
  std::lock_guard lock(mu_);
  if (static_cast<int>(sessions_.size()) >= opt_.max_sessions)
    throw HttpError(429, cat("this server holds at most ", opt_.max_sessions, " sessions; delete one first"),
                    "too_many_sessions");
  if (sessions_.count(id) || fs::exists(wal_path(id)))
    throw HttpError(409, cat("a session '", id, "' already exists"), "session_exists");
  Json rec = {{"t", "create"}, {"created", s->created_}, {"cache", cache_json(memory)}, {"system", system},
              {"tokens", tokens}};
  try {
    s->wal_ = Wal::create(wal_path(id), opt_.durable);
    s->wal_->append(rec.dump());
    s->wal_->sync();
  } catch (const Error& e) {
    std::error_code ec;
    fs::remove(wal_path(id), ec);
    throw HttpError(500, cat("cannot create the session log: ", e.what()));
  }
  auto seq = engine_.new_sequence(memory);
  const int64_t total = static_cast<int64_t>(tokens.size());
  s->stream_ = scheduler_.add_stream(std::move(seq), std::move(tokens), total, s.get());
  sessions_[id] = s;
  return info_locked(*s);
}

Json Sessions::info_locked(Session& s) {
  const StreamStats st = scheduler_.stats(*s.stream_);
  return Json{{"id", s.id_},
              {"object", "session"},
              {"created", s.created_},
              {"policy", st.policy},
              {"cache", cache_json(s.memory_)},
              {"state", st.state},
              {"tokens_seen", st.tokens_total},
              {"tokens_in_memory", st.tokens_in_memory},
              {"tokens_fed", st.tokens_fed},
              {"tokens_queued", st.tokens_queued},
              {"generations_queued", st.generations_queued},
              {"kv_bytes", st.kv_bytes},
              {"durable", opt_.durable}};
}

Json Sessions::info(const std::string& id) {
  auto s = find(id);
  return info_locked(*s);
}

Json Sessions::list() {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) all.push_back(s);
  }
  Json data = Json::array();
  for (auto& s : all) data.push_back(info_locked(*s));
  return Json{{"object", "list"}, {"data", data}};
}

Json Sessions::append(const std::string& id, const Json& body) {
  auto s = find(id);
  const auto text = get_string(body, "text");
  if (!text) throw HttpError(400, "'text' is required", "missing_field", "text");
  if (text->empty()) throw HttpError(400, "'text' must not be empty", "invalid_value", "text");
  const bool interrupt = get_bool(body, "interrupt").value_or(false);
  const bool special = get_bool(body, "special").value_or(false);
  const std::vector<int32_t> tokens = encode(*text, false, special);
  if (tokens.empty()) throw HttpError(400, "the text gives no tokens", "invalid_value", "text");

  std::lock_guard lock(s->mu_);
  if (s->deleted_) throw HttpError(404, cat("no session '", id, "'"), "session_not_found");
  const StreamStats st = scheduler_.stats(*s->stream_);
  if (s->memory_.policy == "full" && st.tokens_total + static_cast<int64_t>(tokens.size()) > s->memory_.n_ctx)
    throw HttpError(400, cat("the session holds ", st.tokens_total, " of its ", s->memory_.n_ctx,
                             " tokens; ", tokens.size(), " more do not fit (a full cache never forgets: use a "
                             "streaming policy such as sink for an endless session)"),
                    "context_length_exceeded");
  if (st.tokens_queued + static_cast<int64_t>(tokens.size()) > opt_.max_queued_tokens)
    throw HttpError(429, cat("the session has ", st.tokens_queued, " tokens still to read; retry once it has caught up"),
                    "too_many_queued_tokens");
  if (interrupt) scheduler_.interrupt(*s->stream_);
  Json rec = {{"t", "append"}, {"text", *text}, {"tokens", tokens}};
  try {
    s->wal_->append(rec.dump());
    s->wal_->sync();
  } catch (const Error& e) {
    s->broken_ = true;
    throw HttpError(500, cat("the append could not be made durable: ", e.what()));
  }
  scheduler_.append(*s->stream_, tokens);
  return Json{{"id", s->id_},
              {"object", "session.append"},
              {"tokens", tokens.size()},
              {"tokens_seen", st.tokens_total + static_cast<int64_t>(tokens.size())}};
}

std::shared_ptr<Generation> Sessions::generate(const std::string& id, const Json& body) {
  auto s = find(id);
  GenerationParams params = parse_generation(body, opt_.limits.max_tokens, opt_.limits);
  const auto prompt = get_string(body, "prompt");
  const bool interrupt = get_bool(body, "interrupt").value_or(false);
  const bool special = get_bool(body, "special").value_or(false);
  std::vector<int32_t> tokens;
  if (prompt && !prompt->empty()) tokens = encode(*prompt, false, special);

  std::lock_guard lock(s->mu_);
  if (s->deleted_) throw HttpError(404, cat("no session '", id, "'"), "session_not_found");
  const StreamStats st = scheduler_.stats(*s->stream_);
  const int running = st.state == "generating" ? 1 : 0;
  if (!interrupt && st.generations_queued + running >= opt_.max_generations)
    throw HttpError(429, cat("the session already has ", st.generations_queued + running,
                             " generations queued or running; wait, or interrupt"),
                    "too_many_generations");
  if (st.tokens_total + static_cast<int64_t>(tokens.size()) == 0)
    throw HttpError(400, "the session is empty: append text (or give a prompt) first", "empty_session");
  if (s->memory_.policy == "full" && st.tokens_total + static_cast<int64_t>(tokens.size()) >= s->memory_.n_ctx)
    throw HttpError(400, cat("the session's ", s->memory_.n_ctx, "-token context is full"), "context_length_exceeded");
  if (interrupt) scheduler_.interrupt(*s->stream_);
  auto g = std::make_shared<Generation>(std::move(params), static_cast<int>(tokens.size()));
  g->id = s->next_gen_++;
  try {
    if (!tokens.empty()) s->wal_->append(Json{{"t", "append"}, {"text", *prompt}, {"tokens", tokens}}.dump());
    s->wal_->append(Json{{"t", "gen"}, {"g", g->id}}.dump());
    s->wal_->sync();
  } catch (const Error& e) {
    s->broken_ = true;
    throw HttpError(500, cat("the request could not be logged: ", e.what()));
  }
  scheduler_.append(*s->stream_, tokens);
  scheduler_.generate(*s->stream_, g);
  return g;
}

Json Sessions::transcript(const std::string& id) {
  auto s = find(id);
  writer_.drain();  // replies of generations that just ended
  uint64_t size;
  {
    std::lock_guard lock(s->mu_);
    size = s->wal_->size();
  }
  const SessionLog log = parse_session_log(Wal::read(wal_path(id), size));
  Json entries = Json::array();
  std::string text;
  for (const auto& e : log.entries) {
    Json j = {{"type", e.type}, {"text", e.text}, {"tokens", e.tokens.size()}};
    if (e.type == "reply") j["finish_reason"] = e.finish_reason;
    entries.push_back(std::move(j));
    text += e.text;
  }
  return Json{{"id", id}, {"object", "session.transcript"}, {"entries", entries}, {"text", text}};
}

Json Sessions::remove(const std::string& id) {
  auto s = find(id);
  {
    std::lock_guard lock(s->mu_);
    s->deleted_ = true;
  }
  scheduler_.remove_stream(s->stream_);
  {
    std::lock_guard lock(mu_);
    sessions_.erase(id);
  }
  // Files go in order after any reply or snapshot still being written; acknowledged once gone.
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  writer_.post([this, s, done] {
    try {
      std::lock_guard lock(s->mu_);
      s->wal_.reset();
      fs::remove(wal_path(s->id_));
      fs::remove(snap_path(s->id_));
      if (opt_.durable) sync_directory(opt_.dir);
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  try {
    future.get();
  } catch (const std::exception& e) {
    throw HttpError(500, cat("the session's files could not be removed: ", e.what()));
  }
  return Json{{"id", id}, {"object", "session.deleted"}, {"deleted", true}};
}

void Sessions::snapshot(Session& s, const Sequence& seq) {
  // Copied now (the scheduler is between steps), written by the disk thread after every reply
  // logged before it, so a snapshot never covers tokens the log lacks.
  auto copy = engine_.new_sequence(seq.config);
  copy->policy->load_state(seq.policy->save_state());
  copy->store = seq.store;
  auto self = s.shared_from_this();
  std::shared_ptr<Sequence> shared(std::move(copy));
  writer_.post([this, self, shared] {
    if (self->deleted_ || self->broken_) return;
    save_sequence(*shared, engine_.config(), snap_path(self->id_));
  });
}

void Sessions::shutdown() {
  writer_.drain();  // replies of the generations the scheduler ended
  if (opt_.durable) {
    std::vector<std::shared_ptr<Session>> all;
    {
      std::lock_guard lock(mu_);
      for (auto& [id, s] : sessions_) all.push_back(s);
    }
    for (auto& s : all) {
      if (s->broken_ || s->deleted_) continue;
      const Sequence& seq = s->stream_->sequence();
      if (seq.policy->n_seen() == s->snapshot_fed_) continue;
      try {
        save_sequence(seq, engine_.config(), snap_path(s->id_));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "endless serve: session %s: last snapshot failed: %s\n", s->id_.c_str(), e.what());
      }
    }
  }
  writer_.stop();
}

int Sessions::restore() {
  if (!opt_.durable) return 0;
  std::set<std::string> ids;
  for (const auto& entry : fs::directory_iterator(opt_.dir)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".wal") continue;
    const std::string id = entry.path().stem().string();
    if (valid_id(id)) ids.insert(id);
  }
  int n = 0;
  for (const auto& id : ids) {
    try {
      restore_one(id);
      ++n;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "endless serve: session %s not restored: %s\n", id.c_str(), e.what());
    }
  }
  return n;
}

void Sessions::restore_one(const std::string& id) {
  Wal::Opened opened = Wal::open(wal_path(id));
  if (opened.dropped_bytes)
    std::fprintf(stderr, "endless serve: session %s: cut %llu bytes of an unfinished record off its log\n",
                 id.c_str(), static_cast<unsigned long long>(opened.dropped_bytes));
  if (opened.records.empty()) {
    // Its creation was never acknowledged.
    opened.wal.reset();
    fs::remove(wal_path(id));
    std::error_code ec;
    fs::remove(snap_path(id), ec);
    fail("its creation never completed (log removed)");
  }
  const SessionLog log = parse_session_log(opened.records);
  MemoryConfig memory = opt_.memory;
  const Json& cache = log.create.at("cache");
  memory.policy = cache.at("policy").get<std::string>();
  memory.n_ctx = cache.at("ctx").get<int64_t>();
  memory.n_sink = cache.at("sink").get<int>();
  memory.window = cache.at("window").get<int64_t>();
  memory.n_keep = cache.at("keep").get<int64_t>();
  memory.kv_type = cache.at("type").get<std::string>() == "f32" ? TensorType::F32 : TensorType::F16;
  const std::vector<int32_t> tokens = log.tokens();
  for (int32_t t : tokens)
    if (t < 0 || t >= engine_.config().n_vocab) fail("its log holds token ", t, ", outside this model's vocabulary");

  std::unique_ptr<Sequence> seq;
  const std::string snap = snap_path(id);
  if (fs::exists(snap)) {
    try {
      auto loaded = load_sequence(engine_, snap);
      const MemoryConfig& c = loaded->config;
      if (c.policy != memory.policy || c.n_ctx != memory.n_ctx || c.n_sink != memory.n_sink ||
          c.window != memory.window || c.n_keep != memory.n_keep || c.kv_type != memory.kv_type)
        fail("its cache settings differ from the log's");
      if (loaded->policy->n_seen() > static_cast<int64_t>(tokens.size()))
        fail("it covers ", loaded->policy->n_seen(), " tokens but the log holds ", tokens.size());
      seq = std::move(loaded);
    } catch (const Error& e) {
      std::fprintf(stderr, "endless serve: session %s: snapshot not used (%s); reading the whole log again\n",
                   id.c_str(), e.what());
    }
  }
  if (!seq) seq = engine_.new_sequence(memory);
  const int64_t covered = seq->policy->n_seen();
  auto s = std::make_shared<Session>();
  s->sessions_ = this;
  s->id_ = id;
  s->created_ = log.create.value("created", int64_t{0});
  s->memory_ = memory;
  s->wal_ = std::move(opened.wal);
  s->next_gen_ = log.max_gen + 1;
  s->snapshot_fed_ = covered;
  std::vector<int32_t> rest(tokens.begin() + covered, tokens.end());
  s->stream_ = scheduler_.add_stream(std::move(seq), std::move(rest), static_cast<int64_t>(tokens.size()), s.get());
  std::lock_guard lock(mu_);
  sessions_[id] = s;
}

}  // namespace endless::server
