// Helpers for the server's tests: a small synthetic model written by `endless synth`, an in-process
// server on a free loopback port, HTTP calls and server-sent-event parsing, and a real
// `endless serve` process that can be killed.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "model/forward.h"
#include "server/request.h"
#include "server/server.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace endless::server::testing {

namespace fs = std::filesystem;
using endless::testing::scratch_dir;

// The endless binary next to the test binary (ctest sets ENDLESS_BIN).
inline std::string endless_bin() {
  const char* bin = std::getenv("ENDLESS_BIN");
  return bin && fs::exists(bin) ? bin : "";
}

#define ENDLESS_REQUIRE_BIN()                                                            \
  do {                                                                                   \
    if (::endless::server::testing::endless_bin().empty())                               \
      GTEST_SKIP() << "ENDLESS_BIN does not name a built endless binary: skipping";      \
  } while (0)

// A small random-weight llama with a SentencePiece-style vocabulary (byte fallback: any text), with
// Q8_0 weights: a token's row of a quantized matrix product is the same whatever the batch.
inline std::string synth_model(const fs::path& dir, const std::string& extra = "") {
  const fs::path path = dir / "model.gguf";
  const std::string cmd = endless_bin() + " synth --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --vocab 320 " +
                          "--seed 7 --type q8_0 -t 1 " + extra + " -o " + path.string() + " > /dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "failed: " << cmd;
  return path.string();
}

struct LoadedModel {
  std::shared_ptr<const Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Engine> engine;
};

inline LoadedModel load_model(const std::string& path, int threads = 2) {
  LoadedModel m;
  m.model = Model::load(path);
  m.tok = std::make_unique<Tokenizer>(Tokenizer::from_gguf(m.model->file()));
  m.engine = std::make_unique<Engine>(m.model, threads);
  return m;
}

// An in-process server on a free loopback port, serving on its own thread.
class TestServer {
 public:
  TestServer(const std::string& model_path, ServerOptions o, int threads = 2) : m_(load_model(model_path, threads)) {
    o.host = "127.0.0.1";
    o.port = 0;
    if (o.sessions.memory.policy.empty()) o.sessions.memory.policy = "sink";
    server_ = std::make_unique<Server>(m_.model, *m_.tok, *m_.engine, o);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
  }
  ~TestServer() { stop(); }
  void stop() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }
  int port() const { return port_; }
  Server& server() { return *server_; }
  const Tokenizer& tok() const { return *m_.tok; }
  httplib::Client client(const std::string& key = "") const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    c.set_write_timeout(30, 0);
    if (!key.empty()) c.set_bearer_token_auth(key.c_str());
    return c;
  }

 private:
  LoadedModel m_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

inline ServerOptions default_options() {
  ServerOptions o;
  o.sessions.memory.policy = "sink";
  o.sessions.memory.n_sink = 4;
  o.sessions.memory.window = 256;
  o.ctx = 1024;
  o.scheduler.parallel = 4;
  o.scheduler.chunk = 16;
  o.scheduler.batch_tokens = 64;
  o.limits.max_tokens = 1 << 24;
  return o;
}

struct Reply {
  int status = 0;
  Json body;
  std::string raw;
};

inline Reply to_reply(const httplib::Result& r) {
  Reply out;
  if (!r) {
    out.status = -1;
    return out;
  }
  out.status = r->status;
  out.raw = r->body;
  try {
    out.body = Json::parse(r->body);
  } catch (...) {
  }
  return out;
}

inline Reply post(httplib::Client& c, const std::string& path, const Json& body) {
  return to_reply(c.Post(path.c_str(), body.dump(), "application/json"));
}
inline Reply post_raw(httplib::Client& c, const std::string& path, const std::string& body) {
  return to_reply(c.Post(path.c_str(), body, "application/json"));
}
inline Reply get(httplib::Client& c, const std::string& path) { return to_reply(c.Get(path.c_str())); }
inline Reply del(httplib::Client& c, const std::string& path) { return to_reply(c.Delete(path.c_str())); }

// A streamed response: the JSON of each `data:` event, and whether it ended with [DONE].
struct Sse {
  int status = 0;
  std::string error;  // the client's error when no response came (status -1)
  std::vector<Json> events;
  bool done = false;
  std::string raw;
  // Concatenated text of completion chunks (choices[0].text) or chat deltas (delta.content).
  std::string text() const {
    std::string t;
    for (const auto& e : events) {
      if (!e.contains("choices") || e["choices"].empty()) continue;
      const auto& c = e["choices"][0];
      if (c.contains("text")) t += c["text"].get<std::string>();
      if (c.contains("delta") && c["delta"].contains("content")) t += c["delta"]["content"].get<std::string>();
    }
    return t;
  }
  std::string finish_reason() const {
    for (const auto& e : events)
      if (e.contains("choices") && !e["choices"].empty() && e["choices"][0]["finish_reason"].is_string())
        return e["choices"][0]["finish_reason"];
    return "";
  }
};

inline Sse parse_sse(const std::string& raw) {
  Sse s;
  s.raw = raw;
  std::istringstream in(raw);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    s.events.push_back(Json::parse(data));
  }
  return s;
}

// POSTs and collects the event stream; `on_event` (if given) sees each event as it arrives.
inline Sse post_stream(httplib::Client& c, const std::string& path, const Json& body,
                       const std::function<void(const Json&)>& on_event = nullptr) {
  std::string raw, pending;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  int status = 0;
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    raw.append(data, n);
    if (on_event) {
      pending.append(data, n);
      size_t pos;
      while ((pos = pending.find("\n\n")) != std::string::npos) {
        const std::string ev = pending.substr(0, pos);
        pending.erase(0, pos + 2);
        if (ev.rfind("data: ", 0) == 0 && ev.substr(6) != "[DONE]") on_event(Json::parse(ev.substr(6)));
      }
    }
    return true;
  };
  auto res = c.send(req);
  Sse s = parse_sse(raw);
  s.status = res ? res->status : (status ? status : -1);
  if (!res) s.error = httplib::to_string(res.error());
  return s;
}

// A real `endless serve` process with its stderr in a file; the port is read from its banner.
class ServeProcess {
 public:
  ServeProcess(const std::vector<std::string>& args, const fs::path& log) : log_(log) {
    { std::ofstream truncate(log, std::ios::trunc); }  // before the fork: no stale banner is read
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND);
      ::dup2(fd, 2);
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      std::vector<std::string> all = {endless_bin(), "serve"};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    static const std::regex banner(R"(listening on http://[0-9.]+:([0-9]+))");
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(log);
      std::stringstream ss;
      ss << in.rdbuf();
      std::smatch m;
      const std::string text = ss.str();
      if (std::regex_search(text, m, banner)) {
        port_ = std::stoi(m[1]);
        break;
      }
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "endless serve exited at start:\n" << text;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ~ServeProcess() { kill(SIGKILL); }  // SIGKILL ends a stopped process too
  int port() const { return port_; }
  bool alive() const { return pid_ > 0; }
  // Sends the signal and returns at once (SIGSTOP, SIGCONT).
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Sends the signal and waits for the process; returns its wait status.
  int kill(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    c.set_connection_timeout(2, 0);
    return c;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  fs::path log_;
};

}  // namespace endless::server::testing
