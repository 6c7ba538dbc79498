// `endless serve`: an HTTP server with OpenAI's API and endless sessions (see docs/server.md).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "common.h"
#include "server/server.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  CacheOptions cache;
  server::ServerOptions server;
  std::string chat_template_file;
  int64_t max_body = 8 << 20;
};

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read '", path, "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int serve(ServeOptions& o) {
  // SIGINT and SIGTERM are taken by one thread (sigwait) that stops the server cleanly; every
  // thread started from here on inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (!o.chat_template_file.empty()) o.server.chat_template = read_text_file(o.chat_template_file);
  if (const char* key = std::getenv("ENDLESS_API_KEY"); key && *key && o.server.api_key.empty())
    o.server.api_key = key;
  Loaded l = load(o.model);
  const ModelConfig& mc = l.engine->config();
  o.server.sessions.memory = memory_config(o.cache, mc);
  o.server.ctx = o.server.sessions.memory.n_ctx;
  o.server.kv_type = o.server.sessions.memory.kv_type;
  o.server.scheduler.batch_tokens = o.cache.memory.max_batch;
  o.server.max_body = static_cast<size_t>(o.max_body);

  server::Server srv(l.model, *l.tokenizer, *l.engine, o.server);
  const int port = srv.bind();
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    srv.stop();
  });
  const auto& so = o.server.sessions;
  std::fprintf(stderr,
               "endless serve: %s (%s, %lld parameters), %d threads; up to %d sequences per step; sessions: %s "
               "(%d restored), cache %s\n",
               l.model->file().path().c_str(), mc.arch.c_str(), static_cast<long long>(l.model->n_params()),
               l.engine->pool().size(), o.server.scheduler.parallel,
               so.dir.empty() ? "in memory only (no --sessions-dir)" : so.dir.c_str(), srv.restored_sessions(),
               o.cache.memory.policy.c_str());
  std::fprintf(stderr, "endless serve: listening on http://%s:%d\n", o.server.host.c_str(), port);
  std::fflush(stderr);
  srv.run();
  // Stopped by a signal, or run() ended by itself: wake the waiter if it still waits.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  std::fprintf(stderr, "endless serve: stopped\n");
  return 0;
}

Registration reg(
    "serve", "Serve OpenAI's HTTP API and endless sessions",
    [](CLI::App& sub) {
      auto o = std::make_shared<ServeOptions>();
      auto& s = o->server;
      o->cache.memory.policy = "sink";  // sessions stream forever by default
      o->cache.memory.window = 2048;
      o->cache.memory.max_batch = 256;
      add_model_options(sub, o->model, /*required=*/false);
      sub.add_option("--host", s.host, "Address to listen on")->capture_default_str();
      sub.add_option("--port", s.port, "Port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
      sub.add_option("--api-key", s.api_key,
                     "Require 'Authorization: Bearer KEY' on every endpoint but /health (or ENDLESS_API_KEY)");
      sub.add_option("--sessions-dir", s.sessions.dir,
                     "Directory of the sessions' logs and snapshots; without it sessions live in memory only");
      sub.add_option("--parallel", s.scheduler.parallel, "Most sequences decoded together in one forward pass")
          ->check(CLI::Range(1, 256))
          ->capture_default_str();
      sub.add_option("--chunk", s.scheduler.chunk, "Most prompt tokens one sequence adds per forward pass")
          ->check(CLI::Range(1, 1 << 16))
          ->capture_default_str();
      add_cache_options(sub, o->cache);
      sub.add_option("--chat-template", o->chat_template_file, "Jinja chat template replacing the model's")
          ->check(existing_file());
      sub.add_option("--alias", s.model_alias, "Model id shown to clients (default: the file's name)");
      sub.add_option("--max-tokens", s.limits.max_tokens, "Most tokens one request may generate")
          ->check(CLI::Range(1, 1 << 24))
          ->capture_default_str();
      sub.add_option("--max-sessions", s.sessions.max_sessions, "Most sessions held")
          ->check(CLI::Range(1, 1 << 20))
          ->capture_default_str();
      sub.add_option("--max-queue", s.scheduler.max_waiting, "Most requests waiting for a free slot (then 429)")
          ->check(CLI::Range(0, 1 << 20))
          ->capture_default_str();
      sub.add_option("--max-body", o->max_body, "Largest request body in bytes (then 413)")
          ->check(CLI::Range(int64_t{1024}, int64_t{1} << 32))
          ->capture_default_str();
      sub.add_option("--snapshot-every", s.sessions.snapshot_every, "Tokens between a session's snapshots")
          ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
          ->capture_default_str();
      sub.add_option("--http-threads", s.http_threads, "HTTP worker threads (0: from --parallel)")
          ->check(CLI::Range(0, 4096));
      sub.add_flag("-v,--verbose", s.verbose, "Log every request on stderr");
      sub.footer("--cache, --sink, --window, -c and --cache-type set the cache of sessions that do not name "
                 "their own (default: sink 4, window 2048); -c is also the context of completion requests. "
                 "-b is the most tokens of one forward pass, all sequences together.");
      return [o] { return serve(*o); };
    });

}  // namespace
}  // namespace endless::cli
