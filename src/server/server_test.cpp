// The server over real HTTP on a free loopback port: OpenAI's endpoints (streamed and not), chat
// templates, every session endpoint, interruption, authentication, limits, malformed input, the
// concurrency guarantee (a request among 15 others gives exactly what it gives alone), restoring
// sessions, and the metrics.
#include "server/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

#include "server/server_test_util.h"

namespace endless::server {
namespace {

using namespace endless::server::testing;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ENDLESS_REQUIRE_BIN();
    dir_ = scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    model_ = synth_model(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
  std::string model_;
};

Json completion(const std::string& prompt, int max_tokens, double temperature = 0, int64_t seed = 1) {
  return Json{{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", temperature}, {"seed", seed},
              {"ignore_eos", true}};
}

// The value of one sample line in a metrics text (-1 if absent).
double metric(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

TEST_F(ServerTest, HealthAndModels) {
  TestServer s(model_, default_options());
  auto c = s.client();
  Reply h = get(c, "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body["status"], "ok");
  Reply m = get(c, "/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.body["object"], "list");
  ASSERT_EQ(m.body["data"].size(), 1u);
  EXPECT_EQ(m.body["data"][0]["id"], "model");
  EXPECT_EQ(m.body["data"][0]["object"], "model");
  EXPECT_EQ(get(c, "/v1/models/model").status, 200);
  EXPECT_EQ(get(c, "/v1/models/other").status, 404);
}

TEST_F(ServerTest, CompletionsStreamedAndNot) {
  TestServer s(model_, default_options());
  auto c = s.client();
  Reply r = post(c, "/v1/completions", completion("Once upon a time", 12));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "text_completion");
  EXPECT_EQ(r.body["model"], "model");
  EXPECT_TRUE(r.body["id"].get<std::string>().starts_with("cmpl-"));
  const auto& choice = r.body["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["finish_reason"], "length");
  const std::string text = choice["text"];
  EXPECT_FALSE(text.empty());
  const auto prompt_tokens = s.tok().encode("Once upon a time", true, true).size();
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 12);
  EXPECT_EQ(r.body["usage"]["total_tokens"], prompt_tokens + 12);

  // Greedy is deterministic; the stream carries the same text in chunks, then [DONE].
  EXPECT_EQ(post(c, "/v1/completions", completion("Once upon a time", 12)).body["choices"][0]["text"], text);
  Json body = completion("Once upon a time", 12);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  Sse sse = post_stream(c, "/v1/completions", body);
  EXPECT_EQ(sse.status, 200);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(sse.text(), text);
  EXPECT_EQ(sse.finish_reason(), "length");
  ASSERT_GE(sse.events.size(), 3u);
  const Json& usage = sse.events.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 12);
  for (const auto& e : sse.events) EXPECT_EQ(e["object"], "text_completion");

  // Token-id prompts, and an array holding one prompt.
  std::vector<int32_t> ids = s.tok().encode("Once upon a time", true, true);
  Json by_ids = {{"prompt", ids}, {"max_tokens", 12}, {"temperature", 0}};
  EXPECT_EQ(post(c, "/v1/completions", by_ids).body["choices"][0]["text"], text);
  Json one = {{"prompt", {"Once upon a time"}}, {"max_tokens", 12}, {"temperature", 0}};
  EXPECT_EQ(post(c, "/v1/completions", one).body["choices"][0]["text"], text);
}

TEST_F(ServerTest, SamplingSeedsAndStops) {
  TestServer s(model_, default_options());
  auto c = s.client();
  auto text_of = [&](const Json& body) {
    Reply r = post(c, "/v1/completions", body);
    EXPECT_EQ(r.status, 200) << r.raw;
    return r.body["choices"][0]["text"].get<std::string>();
  };
  const std::string a = text_of(completion("The cat", 24, 1.0, 42));
  EXPECT_EQ(text_of(completion("The cat", 24, 1.0, 42)), a) << "same seed, same text";
  std::set<std::string> others;
  for (int seed = 1; seed <= 4; ++seed) others.insert(text_of(completion("The cat", 24, 1.0, seed)));
  EXPECT_GT(others.size(), 1u) << "different seeds never differ";
  Json narrow = completion("The cat", 24, 1.0, 42);
  narrow["top_p"] = 0.0001;  // only the most likely token survives: greedy
  EXPECT_EQ(text_of(narrow), text_of(completion("The cat", 24, 0)));

  const std::string greedy = text_of(completion("The cat", 24));
  ASSERT_GT(greedy.size(), 10u);
  // A stop string inside the text, cut at character boundaries (the text may hold any character).
  auto boundary = [&](size_t i) {
    while (i < greedy.size() && (static_cast<unsigned char>(greedy[i]) & 0xC0) == 0x80) ++i;
    return i;
  };
  const size_t from = boundary(4), to = boundary(from + 3);
  ASSERT_LT(to, greedy.size());
  const std::string stop = greedy.substr(from, to - from);
  Json with_stop = completion("The cat", 24);
  with_stop["stop"] = {stop, "zzzz-never"};
  Reply r = post(c, "/v1/completions", with_stop);
  EXPECT_EQ(r.body["choices"][0]["text"], greedy.substr(0, greedy.find(stop)));
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
  with_stop["stop"] = stop;  // a single string
  EXPECT_EQ(post(c, "/v1/completions", with_stop).body["choices"][0]["finish_reason"], "stop");
}

TEST_F(ServerTest, ChatCompletionsWithTheFallbackFormat) {
  TestServer s(model_, default_options());
  auto c = s.client();
  Json body = {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi!"}}}},
               {"max_tokens", 10},
               {"temperature", 0}};
  Reply r = post(c, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "chat.completion");
  EXPECT_TRUE(r.body["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(r.body["choices"][0]["message"]["role"], "assistant");
  const std::string content = r.body["choices"][0]["message"]["content"];
  // The documented fallback prompt, tokenized with BOS.
  const auto want = s.tok().encode("System: Be brief.\n\nUser: Hi!\n\nAssistant:", true, true);
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], want.size());

  body["stream"] = true;
  Sse sse = post_stream(c, "/v1/chat/completions", body);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(sse.text(), content);
  ASSERT_FALSE(sse.events.empty());
  EXPECT_EQ(sse.events.front()["choices"][0]["delta"]["role"], "assistant");
  for (const auto& e : sse.events) EXPECT_EQ(e["object"], "chat.completion.chunk");
  EXPECT_EQ(sse.finish_reason(), r.body["choices"][0]["finish_reason"]);

  // Content given as parts is the same text.
  Json parts = body;
  parts["stream"] = false;
  parts["messages"][1]["content"] = Json::array({{{"type", "text"}, {"text", "Hi"}}, {{"type", "text"}, {"text", "!"}}});
  EXPECT_EQ(post(c, "/v1/chat/completions", parts).body["choices"][0]["message"]["content"], content);
}

TEST_F(ServerTest, ChatTemplateOverride) {
  ServerOptions o = default_options();
  o.chat_template =
      "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}"
      "{% if add_generation_prompt %}<|assistant|>{% endif %}";
  TestServer s(model_, o);
  auto c = s.client();
  Json body = {{"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"max_tokens", 4}, {"temperature", 0}};
  Reply r = post(c, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.raw;
  // "</s>" is the EOS token, written by the template and parsed as the special token it is.
  auto want = s.tok().encode("<|user|>Hello</s><|assistant|>", false, true);
  want.insert(want.begin(), s.tok().bos_id());
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], want.size());
  // A template that raises is the client's error, with the template's message.
  ServerOptions strict = default_options();
  strict.chat_template = "{% if messages[0].role != 'system' %}{{ raise_exception('a system message comes first') }}{% endif %}x";
  TestServer t(model_, strict);
  auto c2 = t.client();
  Reply bad = post(c2, "/v1/chat/completions", body);
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body["error"]["message"].get<std::string>().find("a system message comes first"), std::string::npos);
}

void expect_error(const Reply& r, int status, const std::string& needle = "") {
  EXPECT_EQ(r.status, status) << r.raw;
  ASSERT_TRUE(r.body.is_object() && r.body.contains("error")) << r.raw;
  const Json& e = r.body["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.raw;
  EXPECT_TRUE(e["type"].is_string()) << r.raw;
  EXPECT_TRUE(e.contains("param") && e.contains("code")) << r.raw;
  if (!needle.empty()) {
    EXPECT_NE(e["message"].get<std::string>().find(needle), std::string::npos) << r.raw;
  }
}

TEST_F(ServerTest, MalformedInputIsRejectedWithAMessage) {
  ServerOptions o = default_options();
  o.limits.max_tokens = 100;
  o.max_body = 4096;
  TestServer s(model_, o);
  auto c = s.client();
  expect_error(post_raw(c, "/v1/completions", "{\"prompt\": "), 400, "not valid JSON");
  expect_error(post_raw(c, "/v1/completions", ""), 400, "not valid JSON");
  expect_error(post_raw(c, "/v1/completions", "[1, 2]"), 400, "must be a JSON object");
  expect_error(post(c, "/v1/completions", {{"max_tokens", 3}}), 400, "'prompt' is required");
  expect_error(post(c, "/v1/completions", {{"prompt", 5}}), 400, "'prompt'");
  expect_error(post(c, "/v1/completions", {{"prompt", {"a", "b"}}}), 400, "'prompt'");
  expect_error(post(c, "/v1/completions", {{"prompt", {1, 100000}}}), 400, "outside the vocabulary");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", "ten"}}), 400, "'max_tokens' must be an integer");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 0}}), 400, "max_tokens");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 101}}), 400, "at most 100");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"temperature", "hot"}}), 400, "'temperature' must be a number");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"temperature", -1}}), 400, "temperature");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"top_p", 2}}), 400, "top_p");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"seed", 1.5}}), 400, "'seed' must be an integer");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"stop", 3}}), 400, "'stop'");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"stop", {"a", "b", "c", "d", "e"}}}), 400, "at most 4");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"stream", "yes"}}), 400, "'stream' must be a boolean");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"n", 2}}), 400, "n = 1");
  expect_error(post(c, "/v1/completions", {{"prompt", "x"}, {"logprobs", 3}}), 400, "logprobs");
  expect_error(post(c, "/v1/completions", {{"prompt", std::string(2000, 'a')}}), 400, "context");
  expect_error(post(c, "/v1/chat/completions", {{"messages", "hi"}}), 400, "'messages' must be an array");
  expect_error(post(c, "/v1/chat/completions", {{"messages", Json::array()}}), 400, "must not be empty");
  expect_error(post(c, "/v1/chat/completions", {{"messages", {{{"content", "x"}}}}}), 400, "role");
  expect_error(post(c, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", 7}}}}}), 400, "content");
  expect_error(post(c, "/v1/chat/completions",
                    {{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}),
               400, "only text parts");
  expect_error(post(c, "/v1/chat/completions", {{"max_tokens", 3}}), 400, "'messages' is required");
  expect_error(post_raw(c, "/v1/completions", "{\"prompt\": \"" + std::string(5000, 'a') + "\"}"), 413, "larger than");
  expect_error(get(c, "/v1/nothing-here"), 404, "no endpoint");
  expect_error(post(c, "/v1/models", Json::object()), 404);

  // Random bytes and mutated requests at every endpoint: always an answer, never a crash.
  std::mt19937 rng(1);
  const std::vector<std::string> paths = {"/v1/completions", "/v1/chat/completions", "/v1/sessions",
                                          "/v1/sessions/abc/append", "/v1/sessions/abc/generate"};
  const std::string valid = completion("hello", 2).dump();
  for (int i = 0; i < 150; ++i) {
    std::string body = valid;
    if (i % 3 == 0) {
      body.resize(rng() % 64);
      for (auto& ch : body) ch = static_cast<char>(rng());
    } else {
      for (int k = 0; k < 3; ++k) body[rng() % body.size()] = static_cast<char>(rng());
    }
    Reply r = post_raw(c, paths[i % paths.size()], body);
    ASSERT_GT(r.status, 0) << "no answer: the server died";
    EXPECT_TRUE(r.status == 200 || (r.status >= 400 && r.status < 500)) << r.status << " " << r.raw;
  }
  EXPECT_EQ(get(c, "/health").status, 200);
}

TEST_F(ServerTest, ApiKeyGuardsEverythingButHealth) {
  ServerOptions o = default_options();
  o.api_key = "sekrit-key";
  TestServer s(model_, o);
  auto anon = s.client();
  EXPECT_EQ(get(anon, "/health").status, 200);
  expect_error(get(anon, "/v1/models"), 401, "API key");
  expect_error(post(anon, "/v1/completions", completion("x", 2)), 401);
  expect_error(post(anon, "/v1/sessions", Json::object()), 401);
  expect_error(get(anon, "/metrics"), 401);
  expect_error(get(anon, "/v1/nothing"), 401);
  auto wrong = s.client("sekrit-kez");
  expect_error(get(wrong, "/v1/models"), 401, "invalid API key");
  auto right = s.client("sekrit-key");
  EXPECT_EQ(get(right, "/v1/models").status, 200);
  EXPECT_EQ(post(right, "/v1/completions", completion("x", 2)).status, 200);
  EXPECT_EQ(get(right, "/metrics").status, 200);
  EXPECT_EQ(get(anon, "/v1/models").body["error"]["type"], "authentication_error");
}

TEST_F(ServerTest, SessionEndpoints) {
  TestServer s(model_, default_options());
  auto c = s.client();
  Reply created = post(c, "/v1/sessions", {{"system", "You read logs."}, {"cache", {{"policy", "sink"}, {"sink", 4}, {"window", 64}}}});
  ASSERT_EQ(created.status, 200) << created.raw;
  const std::string id = created.body["id"];
  EXPECT_TRUE(Sessions::valid_id(id));
  EXPECT_EQ(created.body["object"], "session");
  EXPECT_EQ(created.body["policy"], "sink 4+60");
  const int64_t system_tokens = created.body["tokens_seen"];
  EXPECT_EQ(system_tokens, static_cast<int64_t>(s.tok().encode("You read logs.", true).size()));

  int64_t seen = system_tokens;
  for (int i = 0; i < 20; ++i) {
    const std::string line = "event " + std::to_string(i) + ": all is well\n";
    Reply a = post(c, "/v1/sessions/" + id + "/append", {{"text", line}});
    ASSERT_EQ(a.status, 200) << a.raw;
    seen += static_cast<int64_t>(s.tok().encode(line, false).size());
    EXPECT_EQ(a.body["tokens_seen"], seen);
  }
  Reply g = post(c, "/v1/sessions/" + id + "/generate", {{"max_tokens", 8}, {"temperature", 0}});
  ASSERT_EQ(g.status, 200) << g.raw;
  EXPECT_EQ(g.body["session"], id);
  EXPECT_EQ(g.body["usage"]["completion_tokens"], 8);
  seen += 8;
  Json with_prompt = {{"prompt", "Summary:"}, {"max_tokens", 5}, {"temperature", 0}, {"stream", true}};
  Sse sse = post_stream(c, "/v1/sessions/" + id + "/generate", with_prompt);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(sse.finish_reason(), "length");
  seen += static_cast<int64_t>(s.tok().encode("Summary:", false).size()) + 5;

  Reply info = get(c, "/v1/sessions/" + id);
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.body["tokens_seen"], seen);
  EXPECT_EQ(info.body["tokens_in_memory"], 64) << "the sink cache holds its window, no more";
  EXPECT_EQ(info.body["state"], "idle");
  EXPECT_EQ(info.body["cache"]["window"], 64);

  Reply tr = get(c, "/v1/sessions/" + id + "/transcript");
  ASSERT_EQ(tr.status, 200);
  const Json& entries = tr.body["entries"];
  ASSERT_EQ(entries.size(), 1u + 20 + 1 + 1 + 1);
  EXPECT_EQ(entries[0]["type"], "system");
  EXPECT_EQ(entries[5]["text"], "event 4: all is well\n");
  EXPECT_EQ(entries[21]["type"], "reply");
  EXPECT_EQ(entries[21]["text"], g.body["choices"][0]["text"]);
  EXPECT_EQ(entries[22]["text"], "Summary:");
  EXPECT_EQ(entries[23]["text"], sse.text());

  Reply list = get(c, "/v1/sessions");
  ASSERT_EQ(list.body["data"].size(), 1u);
  EXPECT_EQ(list.body["data"][0]["id"], id);

  // Client-chosen ids; conflicts; unknown and malformed ids; bad cache settings.
  EXPECT_EQ(post(c, "/v1/sessions", {{"id", "my-log_1"}}).status, 200);
  expect_error(post(c, "/v1/sessions", {{"id", "my-log_1"}}), 409, "already exists");
  expect_error(post(c, "/v1/sessions", {{"id", "../../etc/passwd"}}), 400, "invalid session id");
  expect_error(post(c, "/v1/sessions", {{"id", std::string(65, 'a')}}), 400, "invalid session id");
  expect_error(post(c, "/v1/sessions", {{"cache", {{"policy", "lru"}}}}), 400, "unknown cache policy");
  expect_error(post(c, "/v1/sessions", {{"cache", {{"policy", "sink"}, {"sink", 8}, {"window", 8}}}}), 400);
  expect_error(post(c, "/v1/sessions", {{"cache", {{"window", "big"}}}}), 400, "'window' must be an integer");
  expect_error(post(c, "/v1/sessions", {{"system", 3}}), 400, "'system' must be a string");
  expect_error(get(c, "/v1/sessions/nope"), 404, "no session");
  expect_error(get(c, "/v1/sessions/a.b"), 400, "invalid session id");
  for (const char* path : {"/v1/sessions/..%2F..%2Fetc%2Fpasswd", "/v1/sessions/%2E%2E", "/v1/sessions/../x.wal"}) {
    Reply r = get(c, path);
    EXPECT_TRUE(r.status == 400 || r.status == 404) << path << " " << r.raw;
  }
  expect_error(post(c, "/v1/sessions/nope/append", {{"text", "x"}}), 404);
  expect_error(post(c, "/v1/sessions/" + id + "/append", Json::object()), 400, "'text' is required");
  expect_error(post(c, "/v1/sessions/" + id + "/append", {{"text", ""}}), 400, "must not be empty");
  expect_error(post(c, "/v1/sessions/" + id + "/append", {{"text", 5}}), 400, "'text' must be a string");
  expect_error(post(c, "/v1/sessions/" + id + "/generate", {{"max_tokens", -1}}), 400, "max_tokens");

  // A full cache refuses what does not fit, with the reason.
  Reply small = post(c, "/v1/sessions", {{"cache", {{"policy", "full"}, {"ctx", 16}}}});
  ASSERT_EQ(small.status, 200) << small.raw;
  const std::string sid = small.body["id"];
  expect_error(post(c, "/v1/sessions/" + sid + "/append", {{"text", std::string(100, 'x')}}), 400, "do not fit");

  Reply d = del(c, "/v1/sessions/" + id);
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.body["deleted"], true);
  expect_error(get(c, "/v1/sessions/" + id), 404);
  expect_error(del(c, "/v1/sessions/" + id), 404);
  EXPECT_EQ(get(c, "/v1/sessions").body["data"].size(), 2u);
}

TEST_F(ServerTest, SessionLimits) {
  ServerOptions o = default_options();
  o.sessions.max_sessions = 2;
  o.sessions.max_generations = 1;
  TestServer s(model_, o);
  auto c = s.client();
  ASSERT_EQ(post(c, "/v1/sessions", {{"id", "a"}}).status, 200);
  ASSERT_EQ(post(c, "/v1/sessions", {{"id", "b"}}).status, 200);
  expect_error(post(c, "/v1/sessions", {{"id", "c"}}), 429, "at most 2 sessions");
  // One generation at a time per session here: a second is refused until the first ends.
  std::atomic<bool> started{false};
  std::thread long_run([&] {
    auto c2 = s.client();
    post_stream(c2, "/v1/sessions/a/generate", {{"max_tokens", 100000}, {"stream", true}, {"ignore_eos", true}},
                [&](const Json&) { started = true; });
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  expect_error(post(c, "/v1/sessions/a/generate", {{"max_tokens", 2}}), 429, "generations");
  // Appends are accepted while it generates (listen while speaking), and an interrupt ends it.
  EXPECT_EQ(post(c, "/v1/sessions/a/append", {{"text", "hello"}}).status, 200);
  EXPECT_EQ(post(c, "/v1/sessions/a/append", {{"text", "stop!"}, {"interrupt", true}}).status, 200);
  long_run.join();
  EXPECT_EQ(del(c, "/v1/sessions/b").status, 200);
  EXPECT_EQ(post(c, "/v1/sessions", {{"id", "c"}}).status, 200);
}

TEST_F(ServerTest, InterruptionStopsTheModelMidReply) {
  TestServer s(model_, default_options());
  auto c = s.client();
  ASSERT_EQ(post(c, "/v1/sessions", {{"id", "talk"}, {"system", "Chat."}}).status, 200);
  std::atomic<int> events{0};
  Sse sse;
  std::thread speaker([&] {
    auto c2 = s.client();
    sse = post_stream(c2, "/v1/sessions/talk/generate",
                      {{"max_tokens", 1000000}, {"stream", true}, {"seed", 3}, {"ignore_eos", true}},
                      [&](const Json&) { ++events; });
  });
  while (events < 5) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  // Queued while it speaks: acknowledged at once, read after the reply.
  Reply queued = post(c, "/v1/sessions/talk/append", {{"text", "(a noise)"}});
  ASSERT_EQ(queued.status, 200);
  EXPECT_EQ(get(c, "/v1/sessions/talk").body["state"], "generating");
  Reply barge = post(c, "/v1/sessions/talk/generate", {{"prompt", "Wait!"}, {"interrupt", true}, {"max_tokens", 3}, {"ignore_eos", true}});
  ASSERT_EQ(barge.status, 200) << barge.raw;
  speaker.join();
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(sse.finish_reason(), "interrupted");
  EXPECT_EQ(barge.body["choices"][0]["finish_reason"], "length");
  // The transcript: the interrupted reply (as far as it got), the noise, the new prompt, the answer.
  Reply tr = get(c, "/v1/sessions/talk/transcript");
  const Json& e = tr.body["entries"];
  ASSERT_EQ(e.size(), 5u) << tr.raw;
  EXPECT_EQ(e[1]["type"], "reply");
  EXPECT_EQ(e[1]["finish_reason"], "interrupted");
  EXPECT_EQ(e[1]["text"], sse.text());
  EXPECT_EQ(e[2]["text"], "(a noise)");
  EXPECT_EQ(e[3]["text"], "Wait!");
  EXPECT_EQ(e[4]["finish_reason"], "length");
}

// The acceptance test: 16 streamed requests with fixed seeds at once, each exactly as alone.
TEST_F(ServerTest, SixteenConcurrentStreamsEqualEachAlone) {
  ServerOptions o = default_options();
  o.scheduler.parallel = 8;
  TestServer s(model_, o);
  std::vector<Json> bodies;
  for (int i = 0; i < 16; ++i) {
    Json b;
    if (i % 2)
      b = completion("Request number " + std::to_string(i) + std::string(i * 3, '!'), 20 + i, 0.9, 100 + i);
    else
      b = {{"messages", {{{"role", "user"}, {"content", "Tell me about " + std::to_string(i)}}}},
           {"max_tokens", 20 + i}, {"temperature", 0.7}, {"seed", 100 + i}, {"ignore_eos", true}};
    b["stream"] = true;
    bodies.push_back(b);
  }
  auto path = [](const Json& b) { return b.contains("messages") ? "/v1/chat/completions" : "/v1/completions"; };
  std::vector<std::string> alone;
  {
    auto c = s.client();
    for (const auto& b : bodies) {
      Sse r = post_stream(c, path(b), b);
      ASSERT_TRUE(r.done);
      alone.push_back(r.text());
    }
  }
  std::vector<Sse> together(bodies.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bodies.size(); ++i)
    threads.emplace_back([&, i] {
      auto c = s.client();
      together[i] = post_stream(c, path(bodies[i]), bodies[i]);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < bodies.size(); ++i) {
    EXPECT_EQ(together[i].status, 200) << "request " << i << ": " << together[i].error;
    EXPECT_TRUE(together[i].done) << i;
    EXPECT_EQ(together[i].text(), alone[i]) << "request " << i;
  }
  // They shared forward passes.
  auto c = s.client();
  const std::string m = get(c, "/metrics").raw;
  EXPECT_LT(metric(m, "endless_step_sequences_bucket{le=\"1\"}"), metric(m, "endless_step_sequences_count"));
}

TEST_F(ServerTest, QueueFullIs429) {
  ServerOptions o = default_options();
  o.scheduler.parallel = 1;
  o.scheduler.max_waiting = 1;
  TestServer s(model_, o);
  std::atomic<bool> started{false};
  std::thread first([&] {
    auto c = s.client();
    Json b = completion("a", 100000);
    b["stream"] = true;
    b["ignore_eos"] = true;
    post_stream(c, "/v1/completions", b, [&](const Json&) { started = true; });
  });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::thread second([&] {
    auto c = s.client();
    post(c, "/v1/completions", completion("b", 2));  // waits for the slot
  });
  auto c = s.client();
  while (metric(get(c, "/metrics").raw, "endless_queue_depth") < 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Reply r = post(c, "/v1/completions", completion("c", 2));
  expect_error(r, 429, "too many requests");
  EXPECT_EQ(r.body["error"]["type"], "rate_limit_error");
  s.stop();  // ends the endless one
  first.join();
  second.join();
}

TEST_F(ServerTest, SessionsSurviveARestart) {
  ServerOptions o = default_options();
  o.sessions.dir = (dir_ / "sessions").string();
  o.sessions.snapshot_every = 8;
  std::string reply_after_restart;
  {
    TestServer s(model_, o);
    auto c = s.client();
    ASSERT_EQ(post(c, "/v1/sessions", {{"id", "keep"}, {"system", "Remember."}}).status, 200);
    for (int i = 0; i < 10; ++i) post(c, "/v1/sessions/keep/append", {{"text", "fact " + std::to_string(i) + ". "}});
    ASSERT_EQ(post(c, "/v1/sessions/keep/generate", {{"max_tokens", 6}, {"temperature", 0}}).status, 200);
    post(c, "/v1/sessions/keep/append", {{"text", "and one more."}});
    // A twin that is never restarted gets the same stream.
    ASSERT_EQ(post(c, "/v1/sessions", {{"id", "twin"}, {"system", "Remember."}}).status, 200);
    for (int i = 0; i < 10; ++i) post(c, "/v1/sessions/twin/append", {{"text", "fact " + std::to_string(i) + ". "}});
    post(c, "/v1/sessions/twin/generate", {{"max_tokens", 6}, {"temperature", 0}});
    post(c, "/v1/sessions/twin/append", {{"text", "and one more."}});
    reply_after_restart = post(c, "/v1/sessions/twin/generate", {{"max_tokens", 12}, {"temperature", 0}})
                              .body["choices"][0]["text"];
  }
  EXPECT_TRUE(fs::exists(dir_ / "sessions" / "keep.snap"));
  TestServer s(model_, o);
  EXPECT_EQ(s.server().restored_sessions(), 2);
  auto c = s.client();
  Reply info = get(c, "/v1/sessions/keep");
  ASSERT_EQ(info.status, 200) << info.raw;
  Reply g = post(c, "/v1/sessions/keep/generate", {{"max_tokens", 12}, {"temperature", 0}});
  EXPECT_EQ(g.body["choices"][0]["text"], reply_after_restart);
  EXPECT_EQ(get(c, "/v1/sessions/keep/transcript").body["entries"].size(), 1u + 10 + 1 + 1 + 1);
}

TEST_F(ServerTest, MetricsInPrometheusFormat) {
  TestServer s(model_, default_options());
  auto c = s.client();
  post(c, "/v1/completions", completion("count me", 7));
  post(c, "/v1/completions", completion("count me", 5));
  post_raw(c, "/v1/completions", "{");
  post(c, "/v1/sessions", {{"id", "m"}});
  // A request is counted once its answer is written, so the client can hold the last answer a
  // moment before the server's counters include it: read until they do (or 5 s pass).
  Reply r;
  for (int tries = 0; tries < 100; ++tries) {
    r = get(c, "/metrics");
    ASSERT_EQ(r.status, 200);
    const bool all_counted =
        r.raw.find("endless_request_duration_seconds_bucket{endpoint=\"POST /v1/completions\",le=\"+Inf\"} 3") !=
            std::string::npos &&
        r.raw.find("endless_request_duration_seconds_bucket{endpoint=\"POST /v1/sessions\",le=\"+Inf\"} 1") !=
            std::string::npos;
    if (all_counted) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string& m = r.raw;
  EXPECT_NE(m.find("endless_requests_total{endpoint=\"POST /v1/completions\",status=\"200\"} 2"), std::string::npos) << m;
  EXPECT_NE(m.find("endless_requests_total{endpoint=\"POST /v1/completions\",status=\"400\"} 1"), std::string::npos);
  EXPECT_NE(m.find("endless_generated_tokens_total 12"), std::string::npos);
  EXPECT_NE(m.find("endless_active_sessions 1"), std::string::npos);
  EXPECT_NE(m.find("endless_queue_depth 0"), std::string::npos);
  EXPECT_NE(m.find("endless_time_to_first_token_seconds_count 2"), std::string::npos);
  EXPECT_NE(m.find("endless_generated_tokens_per_second"), std::string::npos);
  EXPECT_NE(m.find("endless_request_duration_seconds_bucket{endpoint=\"POST /v1/completions\",le=\"+Inf\"} 3"),
            std::string::npos);
  // Every line is a comment or `name{labels} value`.
  static const std::regex sample(R"(^[a-z_]+(\{[^}]*\})? [-+0-9.eE]+(Inf)?$)");
  std::istringstream in(m);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    ++samples;
  }
  EXPECT_GT(samples, 40);
}

}  // namespace
}  // namespace endless::server
