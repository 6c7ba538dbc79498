// `endless serve`: OpenAI's HTTP API (models, completions, chat completions, streamed as
// server-sent events) plus endless sessions, over one scheduler that batches every sequence into
// shared forward passes. See docs/server.md for the endpoints.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "model/forward.h"
#include "server/request.h"
#include "server/scheduler.h"
#include "server/sessions.h"
#include "tokenizer/tokenizer.h"

namespace endless::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (see bind())
  std::string api_key;             // non-empty: "Authorization: Bearer KEY" on all but /health
  std::string model_alias;         // the model's id in /v1/models and responses
  std::optional<std::string> chat_template;  // template source overriding the model's
  SchedulerOptions scheduler;
  SessionsOptions sessions;        // sessions.dir empty: a private temporary directory, not durable
  int64_t ctx = 4096;              // context of a completion request (prompt + reply)
  TensorType kv_type = TensorType::F16;
  Limits limits;
  size_t max_body = 8u << 20;      // bytes
  int http_threads = 0;            // 0: enough for --parallel streams and queued requests
  bool verbose = false;            // one line per request on stderr
};

class Server {
 public:
  // Restores the sessions in options.sessions.dir. Throws Error for unusable options.
  Server(std::shared_ptr<const Model> model, const Tokenizer& tok, Engine& engine, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int restored_sessions() const;
  // Binds the listening socket; returns the port. Throws Error when it cannot.
  int bind();
  // Serves until stop(); then ends every generation and writes the sessions' last snapshots.
  void run();
  // May be called from any thread, also before run() has started serving.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace endless::server
