// A one-line progress bar on stderr with rate and ETA, drawn only when stderr is a terminal.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace endless::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label, std::string unit = "tok")
      : label_(std::move(label)), unit_(std::move(unit)), enabled_(isatty(STDERR_FILENO)),
        start_(std::chrono::steady_clock::now()) {}

  void update(int64_t done, int64_t total) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? done / secs : 0;
    const double eta = rate > 0 ? (total - done) / rate : 0;
    const int width = 30;
    const int filled = total > 0 ? static_cast<int>(width * done / total) : 0;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %s  %.0f %s/s  ETA %02d:%02d ", label_.c_str(),
                 bar.c_str(), static_cast<long long>(done), static_cast<long long>(total),
                 unit_.c_str(), rate, unit_.c_str(), static_cast<int>(eta) / 60,
                 static_cast<int>(eta) % 60);
    if (done >= total) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  std::string label_, unit_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_{};
};

}  // namespace endless::cli
