#include "server/server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "server/chat.h"
#include "server/metrics.h"

namespace endless::server {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

thread_local clock_type::time_point request_start;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void reply_json(httplib::Response& res, const Json& j, int status = 200) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

void reply_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status();
  res.set_content(error_json(e).dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

// Constant-time comparison (for keys of the same length), so the key cannot be guessed byte by
// byte from response times.
bool same_secret(const std::string& given, const std::string& key) {
  if (given.size() != key.size() || key.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i]);
  return diff == 0;
}

Json usage_json(const GenerationResult& r) {
  return Json{{"prompt_tokens", r.prompt_tokens},
              {"completion_tokens", r.completion_tokens},
              {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}

// Server-side timings (as llama.cpp's server reports them): time to the first token, and the
// decoding that followed it.
Json timings_json(const GenerationResult& r) {
  const int decoded = std::max(0, r.completion_tokens - 1);
  return Json{{"prompt_n", r.prompt_tokens},
              {"predicted_n", r.completion_tokens},
              {"ttft_ms", r.ttft_s * 1e3},
              {"predicted_ms", r.decode_s * 1e3},
              {"predicted_per_second", r.decode_s > 0 ? decoded / r.decode_s : 0.0}};
}

// How one generation's output is framed: completion-style (text) or chat-style (message/delta).
struct Framing {
  bool chat = false;
  std::string id;
  std::string model;
  int64_t created = 0;
  Json extra;  // fields added to every object (a session's id)

  Json object(const char* type) const {
    Json j = {{"id", id}, {"object", type}, {"created", created}, {"model", model}};
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
    return j;
  }
  Json finish_json(const std::string& reason) const { return reason.empty() ? Json(nullptr) : Json(reason); }

  Json full(const GenerationResult& r) const {
    Json j = object(chat ? "chat.completion" : "text_completion");
    Json choice = {{"index", 0}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", r.text}};
    else
      choice["text"] = r.text;
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finish_json(r.finish_reason);
    j["choices"] = Json::array({choice});
    j["usage"] = usage_json(r);
    j["timings"] = timings_json(r);
    return j;
  }

  Json chunk(const std::string& text, const std::string& finish, bool role = false) const {
    Json j = object(chat ? "chat.completion.chunk" : "text_completion");
    Json choice = {{"index", 0}};
    if (chat) {
      Json delta = Json::object();
      if (role) delta["role"] = "assistant";
      if (role || !text.empty()) delta["content"] = text;
      choice["delta"] = delta;
    } else {
      choice["text"] = text;
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finish_json(finish);
    j["choices"] = Json::array({choice});
    return j;
  }

  Json usage_chunk(const GenerationResult& r) const {
    Json j = object(chat ? "chat.completion.chunk" : "text_completion");
    j["choices"] = Json::array();
    j["usage"] = usage_json(r);
    return j;
  }
};

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

struct Server::Impl {
  std::shared_ptr<const Model> model;
  const Tokenizer& tok;
  Engine& engine;
  ServerOptions opt;
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Sessions> sessions;
  std::unique_ptr<ChatFormatter> chat;
  std::string temp_dir;  // sessions' private directory when not durable
  httplib::Server http;
  int listen_socket = -1;  // the socket `http` binds (the last one it tried)
  int64_t started = unix_now();
  int restored = 0;
  std::atomic<bool> stopping{false};
  bool finished = false;

  Impl(std::shared_ptr<const Model> m, const Tokenizer& t, Engine& e, ServerOptions o)
      : model(std::move(m)), tok(t), engine(e), opt(std::move(o)) {
    if (opt.model_alias.empty()) opt.model_alias = fs::path(model->file().path()).stem().string();
    opt.limits.n_vocab = engine.config().n_vocab;
    if (opt.ctx < 2) fail("the context must hold at least 2 tokens");
    std::optional<std::string> model_template;
    if (auto t = model->file().get_string("tokenizer.chat_template")) model_template = std::string(*t);
    chat = std::make_unique<ChatFormatter>(tok, model_template, opt.chat_template);

    scheduler = std::make_unique<Scheduler>(engine, tok, opt.scheduler, &metrics);
    SessionsOptions so = opt.sessions;
    so.limits = opt.limits;
    so.memory.max_batch = opt.scheduler.chunk;
    if (so.dir.empty()) {
      std::string pattern = (fs::temp_directory_path() / "endless-sessions-XXXXXX").string();
      if (!::mkdtemp(pattern.data())) fail("cannot create a temporary directory for sessions");
      temp_dir = pattern;
      so.dir = temp_dir;
      so.durable = false;
    }
    sessions = std::make_unique<Sessions>(engine, tok, *scheduler, so);
    restored = sessions->restore();
    scheduler->start();
    routes();
  }

  ~Impl() {
    shutdown();
    if (!temp_dir.empty()) {
      std::error_code ec;
      fs::remove_all(temp_dir, ec);
    }
  }

  void shutdown() {
    if (finished) return;
    finished = true;
    http.stop();
    scheduler->stop();
    sessions->shutdown();
  }

  // ------------------------------------------------------------------------------------------
  // Plumbing

  template <typename F>
  httplib::Server::Handler wrap(F fn) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const HttpError& e) {
        reply_error(res, e);
      } catch (const Error& e) {
        reply_error(res, HttpError(400, e.what()));
      } catch (const std::bad_alloc&) {
        reply_error(res, HttpError(500, "out of memory"));
      } catch (const std::exception& e) {
        reply_error(res, HttpError(500, cat("internal error: ", e.what())));
      }
    };
  }

  void stream(httplib::Response& res, std::shared_ptr<Generation> g, Framing f, bool usage) {
    struct State {
      bool first = true;
    };
    auto st = std::make_shared<State>();
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [g, f = std::move(f), usage, st](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& data) {
            const std::string event = "data: " + data + "\n\n";
            return sink.write(event.data(), event.size());
          };
          if (st->first) {
            st->first = false;
            if (f.chat && !send(dump(f.chunk("", "", /*role=*/true)))) return false;
          }
          std::string text;
          switch (g->next(text, std::chrono::milliseconds(100))) {
            case Generation::Poll::Text:
              return send(dump(f.chunk(text, "")));
            case Generation::Poll::Timeout:
              return true;
            case Generation::Poll::Done:
              break;
          }
          const GenerationResult r = g->result();
          bool ok = true;
          if (r.error) {
            ok = send(dump(error_json(*r.error)));
          } else {
            Json last = f.chunk("", r.finish_reason);
            last["timings"] = timings_json(r);
            ok = send(dump(last));
            if (ok && usage) ok = send(dump(f.usage_chunk(r)));
          }
          if (ok) ok = send("[DONE]");
          if (ok) sink.done();
          return ok;
        },
        [g](bool) { g->cancel(); });  // a client gone mid-stream stops its generation
  }

  void respond(const httplib::Request&, httplib::Response& res, std::shared_ptr<Generation> g, Framing f,
               bool streamed, bool usage) {
    if (streamed) {
      stream(res, std::move(g), std::move(f), usage);
      return;
    }
    const GenerationResult r = g->wait();
    if (r.error) throw *r.error;
    reply_json(res, f.full(r));
  }

  MemoryConfig request_memory(size_t prompt, int max_tokens) const {
    MemoryConfig m;
    m.policy = "full";
    m.n_ctx = std::min<int64_t>(opt.ctx, static_cast<int64_t>(prompt) + max_tokens);
    m.kv_type = opt.kv_type;
    m.max_batch = opt.scheduler.chunk;
    return m;
  }

  void check_prompt(size_t n) const {
    if (n == 0) throw HttpError(400, "the prompt gives no tokens", "invalid_value", "prompt");
    if (static_cast<int64_t>(n) >= opt.ctx)
      throw HttpError(400, cat("the prompt has ", n, " tokens but the context holds ", opt.ctx,
                               " (prompt and reply together)"),
                      "context_length_exceeded", "prompt");
  }

  Framing framing(bool chat_format, const std::string& prefix) const {
    Framing f;
    f.chat = chat_format;
    f.id = random_id(prefix);
    f.model = opt.model_alias;
    f.created = unix_now();
    return f;
  }

  // ------------------------------------------------------------------------------------------
  // Endpoints

  std::vector<int32_t> completion_prompt(const Json& body) const {
    auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) throw HttpError(400, "'prompt' is required", "missing_field", "prompt");
    const Json* p = &*it;
    if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
    if (p->is_string()) return tok.encode(p->get<std::string>(), /*add_special=*/true, /*parse_special=*/true);
    if (p->is_array()) {
      std::vector<int32_t> ids;
      for (const auto& v : *p) {
        if (!v.is_number_integer())
          throw HttpError(400, "'prompt' must be a string, an array of one string, or an array of token ids",
                          "invalid_type", "prompt");
        const int64_t id = v.get<int64_t>();
        if (id < 0 || id >= opt.limits.n_vocab)
          throw HttpError(400, cat("token id ", id, " is outside the vocabulary (", opt.limits.n_vocab, " tokens)"),
                          "invalid_value", "prompt");
        ids.push_back(static_cast<int32_t>(id));
      }
      return ids;
    }
    throw HttpError(400, "'prompt' must be a string, an array of one string, or an array of token ids",
                    "invalid_type", "prompt");
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    const Json body = parse_body(req.body);
    GenerationParams p = parse_generation(body, 16, opt.limits);
    if (auto s = get_string(body, "suffix"); s && !s->empty())
      throw HttpError(400, "'suffix' is not supported", "unsupported_value", "suffix");
    std::vector<int32_t> prompt = completion_prompt(body);
    check_prompt(prompt.size());
    const bool streamed = wants_stream(body), usage = wants_usage(body);
    const MemoryConfig m = request_memory(prompt.size(), p.max_tokens);
    auto g = scheduler->submit(std::move(prompt), m, std::move(p));
    respond(req, res, std::move(g), framing(false, "cmpl-"), streamed, usage);
  }

  void chat_completions(const httplib::Request& req, httplib::Response& res) {
    const Json body = parse_body(req.body);
    GenerationParams p = parse_generation(body, opt.limits.max_tokens, opt.limits);
    if (const auto rf = body.find("response_format"); rf != body.end() && !rf->is_null()) {
      if (!rf->is_object() || rf->value("type", "") != "text")
        throw HttpError(400, "only response_format {\"type\": \"text\"} is supported", "unsupported_value",
                        "response_format");
    }
    if (!body.contains("messages")) throw HttpError(400, "'messages' is required", "missing_field", "messages");
    const std::string text = chat->render(body["messages"], body.contains("tools") ? body["tools"] : Json());
    std::vector<int32_t> prompt = chat->tokenize(text);
    check_prompt(prompt.size());
    for (const auto& s : chat->stops())
      if (p.stop.size() < 5) p.stop.push_back(s);
    const bool streamed = wants_stream(body), usage = wants_usage(body);
    const MemoryConfig m = request_memory(prompt.size(), p.max_tokens);
    auto g = scheduler->submit(std::move(prompt), m, std::move(p));
    respond(req, res, std::move(g), framing(true, "chatcmpl-"), streamed, usage);
  }

  void session_generate(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    const Json body = parse_body(req.body);
    auto g = sessions->generate(id, body);
    Framing f = framing(false, "gen-");
    f.extra = Json{{"session", id}};
    respond(req, res, std::move(g), std::move(f), wants_stream(body), wants_usage(body));
  }

  Json models_json() const {
    const ModelConfig& c = engine.config();
    return Json{{"id", opt.model_alias},
                {"object", "model"},
                {"created", started},
                {"owned_by", "endless"},
                {"meta",
                 {{"arch", c.arch},
                  {"n_params", model->n_params()},
                  {"n_vocab", c.n_vocab},
                  {"n_ctx_train", c.ctx_train},
                  {"n_ctx", opt.ctx},
                  {"chat_template", chat->fallback() ? "fallback" : "jinja"}}}};
  }

  std::string metrics_text() {
    Gauges g;
    const SchedulerStats st = scheduler->stats();
    g.sessions = sessions->count();
    g.active_streams = st.active;
    g.waiting = st.waiting;
    g.generating = st.generating;
    return metrics.render(g);
  }

  void routes() {
    http.new_task_queue = [n = opt.http_threads > 0 ? opt.http_threads
                                                     : std::max(32, 4 * opt.scheduler.parallel + 16)] {
      return new httplib::ThreadPool(static_cast<size_t>(n));
    };
    http.set_socket_options([this](socket_t sock) {
      httplib::default_socket_options(sock);
      listen_socket = sock;
    });
    http.set_payload_max_length(opt.max_body);
    http.set_keep_alive_timeout(5);
    http.set_tcp_nodelay(true);

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      request_start = clock_type::now();
      if (opt.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      const std::string h = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      const std::string given = h.compare(0, prefix.size(), prefix) == 0 ? h.substr(prefix.size()) : std::string();
      if (same_secret(given, opt.api_key)) return httplib::Server::HandlerResponse::Unhandled;
      reply_error(res, HttpError(401, h.empty() ? "an API key is required: send 'Authorization: Bearer KEY'"
                                                : "invalid API key",
                                 "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    // Errors httplib answers itself (unknown path, body too large, malformed request) get an
    // OpenAI error object too.
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string msg;
      switch (res.status) {
        case 404: msg = cat("no endpoint ", req.method, " ", req.path); break;
        case 413: msg = cat("the request body is larger than ", opt.max_body, " bytes"); break;
        case 414: msg = "the request URI is too long"; break;
        default: msg = cat("the request could not be handled (HTTP ", res.status, ")"); break;
      }
      reply_error(res, HttpError(res.status, msg, res.status == 404 ? "not_found" : ""));
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      reply_error(res, HttpError(500, cat("internal error: ", what)));
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const double s = std::chrono::duration<double>(clock_type::now() - request_start).count();
      metrics.request(Metrics::endpoint_label(req.method, req.path), res.status, s);
      if (opt.verbose)
        std::fprintf(stderr, "%s %s -> %d (%.3f s)\n", req.method.c_str(), req.path.c_str(), res.status, s);
    });

    http.Get("/health", wrap([](const httplib::Request&, httplib::Response& res) {
      reply_json(res, Json{{"status", "ok"}});
    }));
    http.Get("/metrics", wrap([this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    }));
    http.Get("/v1/models", wrap([this](const httplib::Request&, httplib::Response& res) {
      reply_json(res, Json{{"object", "list"}, {"data", Json::array({models_json()})}});
    }));
    http.Get(R"(/v1/models/(.+))", wrap([this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] != opt.model_alias)
        throw HttpError(404, cat("no model '", req.matches[1].str(), "'"), "model_not_found");
      reply_json(res, models_json());
    }));
    http.Post("/v1/completions", wrap([this](const auto& req, auto& res) { completions(req, res); }));
    http.Post("/v1/chat/completions", wrap([this](const auto& req, auto& res) { chat_completions(req, res); }));
    http.Post("/v1/sessions", wrap([this](const httplib::Request& req, httplib::Response& res) {
      reply_json(res, sessions->create(parse_body(req.body.empty() ? "{}" : req.body)));
    }));
    http.Get("/v1/sessions", wrap([this](const httplib::Request&, httplib::Response& res) {
      reply_json(res, sessions->list());
    }));
    http.Get(R"(/v1/sessions/([^/]+))", wrap([this](const httplib::Request& req, httplib::Response& res) {
      reply_json(res, sessions->info(req.matches[1]));
    }));
    http.Delete(R"(/v1/sessions/([^/]+))", wrap([this](const httplib::Request& req, httplib::Response& res) {
      reply_json(res, sessions->remove(req.matches[1]));
    }));
    http.Get(R"(/v1/sessions/([^/]+)/transcript)", wrap([this](const httplib::Request& req, httplib::Response& res) {
      reply_json(res, sessions->transcript(req.matches[1]));
    }));
    http.Post(R"(/v1/sessions/([^/]+)/append)", wrap([this](const httplib::Request& req, httplib::Response& res) {
      reply_json(res, sessions->append(req.matches[1], parse_body(req.body)));
    }));
    http.Post(R"(/v1/sessions/([^/]+)/generate)", wrap([this](const auto& req, auto& res) { session_generate(req, res); }));
  }
};

Server::Server(std::shared_ptr<const Model> model, const Tokenizer& tok, Engine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), tok, engine, std::move(options))) {
  // A client that goes away mid-response must not kill the server.
  ::signal(SIGPIPE, SIG_IGN);
}

Server::~Server() = default;

int Server::restored_sessions() const { return impl_->restored; }

// Debian's cpp-httplib is a compiled library that listens with a backlog of 5. A burst of clients
// (sixteen streams opened at once while the accepting thread waits for a core) overflows that
// queue: the kernel drops handshakes, falls back to SYN cookies and now and then resets a
// connection whose request was already sent. Listening again on the bound socket raises the
// backlog (Linux caps it at net.core.somaxconn).
constexpr int kListenBacklog = 1024;

int Server::bind() {
  auto& i = *impl_;
  int port = i.opt.port;
  if (port == 0) {
    port = i.http.bind_to_any_port(i.opt.host);
    if (port <= 0) fail("cannot listen on ", i.opt.host, " (any port)");
  } else if (!i.http.bind_to_port(i.opt.host, port)) {
    fail("cannot listen on ", i.opt.host, ":", port, " (in use, or not an address of this machine)");
  }
  if (i.listen_socket < 0 || ::listen(i.listen_socket, kListenBacklog) != 0)
    fail("cannot raise the listen backlog on ", i.opt.host, ":", port, ": ", std::strerror(errno));
  return port;
}

void Server::run() {
  if (!impl_->stopping) impl_->http.listen_after_bind();
  impl_->shutdown();
}

void Server::stop() {
  impl_->stopping = true;
  // Generations end first (503), so no handler is left waiting on one while HTTP shuts down.
  impl_->scheduler->stop();
  impl_->http.stop();
}

}  // namespace endless::server
