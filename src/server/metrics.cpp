#include "server/metrics.h"

#include <cstdio>

namespace endless::server {
namespace {

constexpr double kRateWindow = 10.0;  // seconds the tokens/s gauges average over

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::vector<double> latency_bounds() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}

void Histogram::observe(double v) {
  for (size_t i = 0; i < bounds_.size(); ++i)
    if (v <= bounds_[i]) {
      ++counts_[i];
      break;
    }
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : labels + ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{" + sep + "le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{" + sep + "le=\"+Inf\"} " + std::to_string(count_) + "\n";
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + braces + " " + num(sum_) + "\n";
  out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : ttft_(latency_bounds()),
      step_seconds_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}),
      step_sequences_({1, 2, 4, 8, 16, 32, 64}) {}

std::string Metrics::endpoint_label(const std::string& method, const std::string& path) {
  std::string p = "other";
  if (path == "/health" || path == "/metrics" || path == "/v1/models" || path == "/v1/completions" ||
      path == "/v1/chat/completions" || path == "/v1/sessions") {
    p = path;
  } else if (path.rfind("/v1/sessions/", 0) == 0) {
    // /v1/sessions/{id} and /v1/sessions/{id}/{append,generate,transcript}
    const std::string rest = path.substr(13);
    const size_t slash = rest.find('/');
    const std::string tail = slash == std::string::npos ? "" : rest.substr(slash);
    if (slash != 0 && !rest.empty() &&
        (tail.empty() || tail == "/append" || tail == "/generate" || tail == "/transcript"))
      p = "/v1/sessions/{id}" + tail;
  }
  return method + " " + p;
}

void Metrics::request(const std::string& endpoint, int status, double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
  auto it = latency_.find(endpoint);
  if (it == latency_.end()) it = latency_.emplace(endpoint, Histogram(latency_bounds())).first;
  it->second.observe(seconds);
}

namespace {
template <typename Deque, typename TimePoint>
void add_recent(Deque& d, TimePoint now, int64_t n) {
  // One entry per 10 ms at most, and none older than the window: bounded however long we run.
  if (!d.empty() && std::chrono::duration<double>(now - d.back().first).count() < 0.01)
    d.back().second += n;
  else
    d.emplace_back(now, n);
  while (!d.empty() && std::chrono::duration<double>(now - d.front().first).count() > kRateWindow)
    d.pop_front();
}
}  // namespace

void Metrics::tokens_in(int64_t n) {
  std::lock_guard lock(mu_);
  tokens_in_ += n;
  add_recent(recent_in_, clock::now(), n);
}

void Metrics::tokens_out(int64_t n) {
  std::lock_guard lock(mu_);
  tokens_out_ += n;
  add_recent(recent_out_, clock::now(), n);
}

void Metrics::ttft(double seconds) {
  std::lock_guard lock(mu_);
  ttft_.observe(seconds);
}

void Metrics::step(int sequences, int tokens, double seconds) {
  std::lock_guard lock(mu_);
  ++steps_;
  step_seconds_.observe(seconds);
  step_sequences_.observe(sequences);
  (void)tokens;
}

void Metrics::generation_finished(const std::string& reason) {
  std::lock_guard lock(mu_);
  ++finished_[reason];
}

double Metrics::rate_locked(const std::deque<std::pair<clock::time_point, int64_t>>& events,
                            clock::time_point now) {
  int64_t total = 0;
  for (const auto& [t, n] : events)
    if (std::chrono::duration<double>(now - t).count() <= kRateWindow) total += n;
  return static_cast<double>(total) / kRateWindow;
}

std::string Metrics::render(const Gauges& g) {
  std::lock_guard lock(mu_);
  const auto now = clock::now();
  for (auto* d : {&recent_in_, &recent_out_})
    while (!d->empty() && std::chrono::duration<double>(now - d->front().first).count() > kRateWindow)
      d->pop_front();
  std::string out;
  auto head = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  head("endless_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
  for (const auto& [key, n] : requests_)
    out += "endless_requests_total{endpoint=\"" + key.first + "\",status=\"" + std::to_string(key.second) +
           "\"} " + std::to_string(n) + "\n";
  head("endless_request_duration_seconds", "histogram", "Time from request to the end of the response.");
  for (const auto& [endpoint, h] : latency_)
    h.render(out, "endless_request_duration_seconds", "endpoint=\"" + endpoint + "\"");
  head("endless_prompt_tokens_total", "counter", "Tokens read into sequences (prompts, appended text).");
  out += "endless_prompt_tokens_total " + std::to_string(tokens_in_) + "\n";
  head("endless_generated_tokens_total", "counter", "Tokens generated.");
  out += "endless_generated_tokens_total " + std::to_string(tokens_out_) + "\n";
  head("endless_prompt_tokens_per_second", "gauge", "Prompt tokens read per second over the last 10 s.");
  out += "endless_prompt_tokens_per_second " + num(rate_locked(recent_in_, now)) + "\n";
  head("endless_generated_tokens_per_second", "gauge", "Tokens generated per second over the last 10 s.");
  out += "endless_generated_tokens_per_second " + num(rate_locked(recent_out_, now)) + "\n";
  head("endless_generations_total", "counter", "Generations finished, by finish reason.");
  for (const auto& [reason, n] : finished_)
    out += "endless_generations_total{finish_reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
  head("endless_time_to_first_token_seconds", "histogram", "Time from request to its first generated token.");
  ttft_.render(out, "endless_time_to_first_token_seconds", "");
  head("endless_forward_steps_total", "counter", "Batched forward passes run.");
  out += "endless_forward_steps_total " + std::to_string(steps_) + "\n";
  head("endless_step_duration_seconds", "histogram", "Duration of one batched forward pass.");
  step_seconds_.render(out, "endless_step_duration_seconds", "");
  head("endless_step_sequences", "histogram", "Sequences in one batched forward pass.");
  step_sequences_.render(out, "endless_step_sequences", "");
  head("endless_active_sessions", "gauge", "Sessions held.");
  out += "endless_active_sessions " + std::to_string(g.sessions) + "\n";
  head("endless_active_sequences", "gauge", "Sequences with work (prefill or generation).");
  out += "endless_active_sequences " + std::to_string(g.active_streams) + "\n";
  head("endless_generating", "gauge", "Generations running.");
  out += "endless_generating " + std::to_string(g.generating) + "\n";
  head("endless_queue_depth", "gauge", "Requests waiting for a free slot.");
  out += "endless_queue_depth " + std::to_string(g.waiting) + "\n";
  return out;
}

}  // namespace endless::server
