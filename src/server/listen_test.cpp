// The listening socket's queue: while `endless serve` is stopped (SIGSTOP: its accepting thread
// waits for a core, as on a loaded machine), a burst of clients completes its handshakes in the
// kernel's queue, and every one of them is answered once the server runs again. cpp-httplib's own
// backlog of 5 dropped the rest of such a burst (and sometimes reset a connection), which failed
// the sixteen-stream test now and then.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "server/server_test_util.h"

namespace endless::server {
namespace {

using namespace endless::server::testing;

int somaxconn() {
  std::ifstream in("/proc/sys/net/core/somaxconn");
  int n = 0;
  return in >> n ? n : 128;
}

TEST(Listen, ABurstOfClientsWaitsInTheQueueAndIsAnswered) {
  ENDLESS_REQUIRE_BIN();
  const fs::path dir = scratch_dir("listen");
  const std::string model = synth_model(dir);
  ServeProcess server({"-m", model, "--port", "0", "--sessions-dir", (dir / "sessions").string(), "-t", "1"},
                      dir / "serve.log");
  ASSERT_TRUE(server.alive());
  const int burst = std::min(64, somaxconn());  // Linux caps any backlog at net.core.somaxconn

  server.signal(SIGSTOP);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<pollfd> fds;
  struct CloseAll {  // also when an assertion returns early
    std::vector<pollfd>& fds;
    ~CloseAll() {
      for (auto& p : fds) ::close(p.fd);
    }
  } close_all{fds};
  for (int i = 0; i < burst; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(fd, 0);
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
    fds.push_back({fd, POLLOUT, 0});
  }
  // The handshakes complete in the kernel, without the stopped server; a dropped one would be
  // retried by the client only after a second.
  int connected = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(800);
  while (connected < burst && std::chrono::steady_clock::now() < deadline) {
    ::poll(fds.data(), fds.size(), 50);
    connected = 0;
    for (auto& p : fds) {
      int err = 1;
      socklen_t len = sizeof err;
      if ((p.revents & POLLOUT) && ::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
        ++connected;
    }
  }
  EXPECT_EQ(connected, burst) << "connections whose handshake completed while the server was stopped";

  // Every client sends its request before the server runs again, and every one is answered.
  const std::string request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  for (auto& p : fds) ASSERT_EQ(::send(p.fd, request.data(), request.size(), MSG_NOSIGNAL), ssize_t(request.size()));
  server.signal(SIGCONT);
  int answered = 0;
  for (auto& p : fds) {
    std::string reply;
    char buf[512];
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until) {
      pollfd q{p.fd, POLLIN, 0};
      if (::poll(&q, 1, 100) <= 0) continue;
      const ssize_t n = ::recv(p.fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
    if (reply.rfind("HTTP/1.1 200", 0) == 0) ++answered;
  }
  EXPECT_EQ(answered, burst);
}

}  // namespace
}  // namespace endless::server
