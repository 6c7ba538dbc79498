// Server metrics in Prometheus' text exposition format (GET /metrics): request counts and
// latencies per endpoint, tokens in and out, recent throughput, time to first token, forward-pass
// steps. Every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace endless::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket, _sum and _count lines; `labels` is "" or `key="value"`.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // cumulative at render time
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Values read at scrape time from the parts that own them.
struct Gauges {
  int sessions = 0;
  int active_streams = 0;
  int waiting = 0;
  int generating = 0;
};

class Metrics {
 public:
  Metrics();
  void request(const std::string& endpoint, int status, double seconds);
  void tokens_in(int64_t n);
  void tokens_out(int64_t n);
  void ttft(double seconds);
  void step(int sequences, int tokens, double seconds);
  void generation_finished(const std::string& reason);
  std::string render(const Gauges& g);

  // The label an endpoint is counted under: session ids become {id}, unknown paths "other".
  static std::string endpoint_label(const std::string& method, const std::string& path);

 private:
  using clock = std::chrono::steady_clock;
  double rate_locked(const std::deque<std::pair<clock::time_point, int64_t>>& events, clock::time_point now);

  std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, uint64_t> finished_;
  int64_t tokens_in_ = 0, tokens_out_ = 0, steps_ = 0;
  Histogram ttft_, step_seconds_, step_sequences_;
  std::deque<std::pair<clock::time_point, int64_t>> recent_in_, recent_out_;
};

}  // namespace endless::server
