// Crash safety of sessions with a real `endless serve` process: a client appends numbered lines
// (and now and then asks for a reply) while the server is killed with SIGKILL at random moments
// and restarted, 25 times. Afterwards every acknowledged line is in the session, in order, exactly
// once, and every reply a client received is there too; and the restored session (snapshot + the log after it) generates exactly what a session
// rebuilt from the whole log generates, so nothing was fed twice or lost from the model's memory.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>

#include "server/server_test_util.h"

namespace endless::server {
namespace {

using namespace endless::server::testing;

TEST(Crash, AcknowledgedAppendsSurviveKillNine) {
  ENDLESS_REQUIRE_BIN();
  const fs::path dir = scratch_dir("crash");
  const std::string model = synth_model(dir);
  const fs::path sessions = dir / "sessions";
  auto args_for = [&](const fs::path& sdir) {
    return std::vector<std::string>{"-m", model, "--port", "0", "--sessions-dir", sdir.string(), "--snapshot-every",
                                    "24", "-t", "1", "--cache", "sink", "--sink", "4", "--window", "48", "--chunk", "8"};
  };
  auto server = std::make_unique<ServeProcess>(args_for(sessions), dir / "serve.log");
  ASSERT_TRUE(server->alive());
  {
    auto c = server->client();
    ASSERT_EQ(post(c, "/v1/sessions", {{"id", "log"}, {"system", "Numbered lines follow."}}).status, 200);
  }

  std::atomic<int> port{server->port()};
  std::atomic<bool> done{false};
  std::mutex mu;
  std::vector<int> acked;
  int replies = 0;
  std::thread client([&] {
    for (int i = 0; !done; ++i) {
      httplib::Client c("127.0.0.1", port.load());
      c.set_connection_timeout(0, 200000);
      c.set_read_timeout(10, 0);
      if (i % 7 == 6) {
        // Now and then the model answers: its reply goes into the stream too.
        auto r = c.Post("/v1/sessions/log/generate", Json{{"max_tokens", 3}, {"temperature", 0}}.dump(), "application/json");
        if (r && r->status == 200) {
          std::lock_guard lock(mu);
          ++replies;
        }
        continue;
      }
      // A line is sent once: one whose answer was lost may or may not be in the session.
      auto r = c.Post("/v1/sessions/log/append", Json{{"text", "line " + std::to_string(i) + "\n"}}.dump(),
                      "application/json");
      if (r && r->status == 200) {
        std::lock_guard lock(mu);
        acked.push_back(i);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
      }
    }
  });

  std::mt19937 rng(2024);
  const int kills = 25;
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(40 + rng() % 160));
    const int status = server->kill(SIGKILL);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the server died before it was killed:\n"
                                                                    << server->log();
    server = std::make_unique<ServeProcess>(args_for(sessions), dir / "serve.log");
    ASSERT_TRUE(server->alive()) << "restart " << k;
    EXPECT_EQ(server->log().find("not restored"), std::string::npos) << server->log();
    port = server->port();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  done = true;
  client.join();
  server->kill(SIGKILL);  // the last one too: everything below starts from a crash

  // A copy of the files without the snapshot: restoring it reads the whole log again.
  const fs::path replay = dir / "replay";
  fs::create_directories(replay);
  for (const auto& e : fs::directory_iterator(sessions))
    if (e.path().extension() == ".wal") fs::copy_file(e.path(), replay / e.path().filename());
  ASSERT_TRUE(fs::exists(sessions / "log.snap")) << "no snapshot was ever written";

  server = std::make_unique<ServeProcess>(args_for(sessions), dir / "serve.log");
  auto c = server->client();
  Reply tr = get(c, "/v1/sessions/log/transcript");
  ASSERT_EQ(tr.status, 200) << tr.raw;
  std::vector<int> lines;
  int reply_entries = 0;
  for (const auto& e : tr.body["entries"]) {
    reply_entries += e["type"] == "reply";
    if (e["type"] != "append") continue;
    const std::string text = e["text"];
    ASSERT_TRUE(text.starts_with("line ") && text.ends_with("\n")) << text;
    lines.push_back(std::stoi(text.substr(5)));
  }
  for (size_t i = 1; i < lines.size(); ++i) ASSERT_LT(lines[i - 1], lines[i]) << "out of order or repeated";
  const std::set<int> present(lines.begin(), lines.end());
  for (int a : acked) EXPECT_TRUE(present.count(a)) << "acknowledged line " << a << " was lost";
  EXPECT_GE(acked.size(), 50u) << "too few appends to mean much";
  EXPECT_GT(replies, 0);
  // A reply the client received in full was on disk before it was sent (a reply cut off by the
  // crash may or may not be there).
  EXPECT_GE(reply_entries, replies) << "an acknowledged reply was lost";
  std::printf("%d kills, %zu appends acknowledged, %zu lines in the session, %d replies\n", kills, acked.size(),
              lines.size(), replies);

  // The same stream in the model's memory whichever way it was restored.
  const Json ask = {{"max_tokens", 16}, {"temperature", 0}};
  Reply info = get(c, "/v1/sessions/log");
  Reply a = post(c, "/v1/sessions/log/generate", ask);
  ASSERT_EQ(a.status, 200) << a.raw;
  auto replayed = std::make_unique<ServeProcess>(args_for(replay), dir / "replay.log");
  auto c2 = replayed->client();
  Reply info2 = get(c2, "/v1/sessions/log");
  EXPECT_EQ(info2.body["tokens_seen"], info.body["tokens_seen"]);
  Reply b = post(c2, "/v1/sessions/log/generate", ask);
  ASSERT_EQ(b.status, 200) << b.raw;
  EXPECT_EQ(a.body["choices"][0]["text"], b.body["choices"][0]["text"]);

  // A clean stop (SIGTERM) exits 0 and leaves a snapshot that covers everything.
  const int status = server->kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace endless::server
