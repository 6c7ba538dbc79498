// `endless bench`: prefill and decode speed in the manner of llama-bench, a STREAM-like memory
// bandwidth probe (--bandwidth) to set decode speed against, and an arithmetic peak probe
// (--peak, peak_probe.h) to set prefill speed against.
//
// ppN: a fresh sequence takes N random tokens in batches of -b (default 512), logits for the
//      last token of each batch only (as llama-bench's llama_batch_get_one); tokens/s = N / time.
// tgN: a fresh sequence takes one token (untimed), then N single-token steps, each giving logits.
// With a depth D (-d, as llama-bench's "@ dD"), each sequence first takes D random tokens,
// untimed, so the test runs against a cache that already holds them.
// Each test runs once untimed (warm-up), then -r times; the table shows mean ± sample standard
// deviation of the per-run tokens/s, like llama-bench.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>

#include "common.h"
#include "peak_probe.h"
#include "convert/synth.h"
#include "kernels/kernels.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace endless::cli {
namespace {

using Clock = std::chrono::steady_clock;

// A flat JSON object, written by hand (strings escaped, numbers in full precision).
class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& v) { return raw(key, quote(v)); }
  JsonObject& add(const std::string& key, const char* v) { return raw(key, quote(v)); }
  JsonObject& add(const std::string& key, double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return raw(key, std::isfinite(v) ? buf : "null");
  }
  JsonObject& add(const std::string& key, int64_t v) { return raw(key, std::to_string(v)); }
  JsonObject& add(const std::string& key, int v) { return raw(key, std::to_string(v)); }
  JsonObject& add(const std::string& key, size_t v) { return raw(key, std::to_string(v)); }
  JsonObject& add(const std::string& key, const std::vector<double>& v) {
    std::string a = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%s%.17g", i ? ", " : "", v[i]);
      a += buf;
    }
    return raw(key, a + "]");
  }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  static std::string quote(const std::string& s) {
    std::string q = "\"";
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') q += '\\', q += static_cast<char>(c);
      else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        q += buf;
      } else q += static_cast<char>(c);
    }
    return q + "\"";
  }
  JsonObject& raw(const std::string& key, const std::string& value) {
    body_ += (body_.empty() ? "" : ", ") + quote(key) + ": " + value;
    return *this;
  }
  std::string body_;
};

std::string json_array(const std::vector<JsonObject>& items) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ",\n  " : "\n  ") + items[i].str();
  return s + (items.empty() ? "]" : "\n]");
}

struct BenchOptions {
  std::vector<std::string> models;
  std::vector<std::string> synth;
  std::vector<int> n_prompt{512};
  std::vector<int> n_gen{128};
  std::vector<int> sequences{1};
  std::vector<int> depths{0};
  std::vector<int> threads;
  int reps = 5;
  int batch = 512;
  std::string kv_type = "f16";
  bool json = false;
  bool mlock = false;
  bool no_mmap = false;
  bool bandwidth = false;
  int64_t bandwidth_mib = 1024;
  bool peak = false;
  uint64_t seed = 1;
};

// ---------------------------------------------------------------------------------------------
// Models to measure.

struct BenchModel {
  std::string label;  // "llama 254M Q4_0"
  std::string path;   // the file (for synth models, a temporary one, removed when done)
  bool temporary = false;
  std::shared_ptr<const Model> model;
  size_t file_size = 0;
};

std::string human_params(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1'000'000) std::snprintf(buf, sizeof buf, "%.0fM", n / 1e6);
  else std::snprintf(buf, sizeof buf, "%.0fK", n / 1e3);
  return buf;
}

std::string human_size(size_t bytes) {
  char buf[32];
  if (bytes >= (size_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(1 << 30));
  else std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / double(1 << 20));
  return buf;
}

// "dim=1024,layers=16,type=q4_0": fields of SynthSpec; the rest keep their defaults. A bare word
// is taken as the type ("q4_0" alone is the default shape in Q4_0). "254m" stands for the shape
// of issue #5's comparison (dim 1024, 16 layers, 16/8 heads, ff 2816, vocab 32000).
convert::SynthSpec parse_synth(const std::string& text) {
  convert::SynthSpec s;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    std::string key = eq == std::string::npos ? "" : item.substr(0, eq);
    std::string value = eq == std::string::npos ? item : item.substr(eq + 1);
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    auto number = [&]() -> int64_t {
      try {
        size_t used = 0;
        const long long v = std::stoll(value, &used);
        if (used != value.size()) throw std::invalid_argument(value);
        return v;
      } catch (const std::exception&) {
        fail("--synth: '", item, "' needs a whole number");
      }
    };
    std::string lower = value;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (key.empty() && lower == "254m") {
      s.dim = 1024, s.layers = 16, s.heads = 16, s.kv_heads = 8, s.ff = 2816, s.vocab = 32000;
    } else if (key.empty() || key == "type") {
      std::string upper = value;
      std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
      const auto t = tensor_type_from_name(upper);
      if (!t) fail("--synth: unknown weight type '", value, "'");
      s.type = *t;
    } else if (key == "arch") s.arch = value;
    else if (key == "dim") s.dim = number();
    else if (key == "layers") s.layers = number();
    else if (key == "heads") s.heads = number();
    else if (key == "kv_heads" || key == "kv-heads") s.kv_heads = number();
    else if (key == "ff") s.ff = number();
    else if (key == "vocab") s.vocab = number();
    else if (key == "ctx") s.ctx = number();
    else if (key == "seed") s.seed = static_cast<uint64_t>(number());
    else fail("--synth: unknown field '", key, "' (arch, dim, layers, heads, kv_heads, ff, vocab, ctx, seed, type)");
  }
  s.validate();
  return s;
}

BenchModel load_model(const std::string& path, bool temporary, Residency residency = Residency::mapped) {
  BenchModel m;
  m.path = path;
  m.temporary = temporary;
  m.model = Model::load(path, residency);
  m.file_size = m.model->file().file_size();
  const ModelConfig& c = m.model->config();
  m.label = c.arch + " " + human_params(m.model->n_params()) + " " +
            std::string(type_name(m.model->main_type()));
  return m;
}

BenchModel synth_model(const std::string& spec_text, Residency residency) {
  convert::SynthSpec spec = parse_synth(spec_text);
  const auto dir = std::filesystem::temp_directory_path();
  const auto path = dir / ("endless-bench-" + std::to_string(::getpid()) + "-" +
                           std::string(type_name(spec.type)) + ".gguf");
  std::fprintf(stderr, "bench: writing synthetic model %s (%s)\n", path.c_str(), spec_text.c_str());
  convert::write_synth_model(spec, path.string());
  BenchModel m = load_model(path.string(), true, residency);
  // The mapping keeps the data; the name can go now, so nothing is left behind on any exit.
  std::filesystem::remove(path);
  return m;
}

// ---------------------------------------------------------------------------------------------
// The two tests.

struct Stats {
  double mean = 0, stddev = 0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= v.size();
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(ss / (v.size() - 1));
  }
  return s;
}

struct Result {
  std::string test;
  int n_prompt = 0, n_gen = 0, n_depth = 0;
  std::vector<double> seconds;  // per timed run
  std::vector<double> tps;      // tokens/s per timed run
};

MemoryConfig bench_memory(const BenchOptions& o, int64_t n_ctx) {
  MemoryConfig m;
  m.policy = "full";
  m.n_ctx = std::max<int64_t>(n_ctx, 16);
  m.kv_type = o.kv_type == "f32" ? TensorType::F32 : TensorType::F16;
  m.max_batch = o.batch;
  return m;
}

std::vector<int32_t> random_tokens(std::mt19937_64& rng, int64_t n_vocab, int n) {
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(n_vocab - 1));
  std::vector<int32_t> t(n);
  for (auto& x : t) x = dist(rng);
  return t;
}

// Keeps the compiler from dropping work whose result is unused.
volatile float g_sink;

// The context a test starts from: depth random tokens, untimed.
void fill_depth(Engine& engine, Sequence& seq, std::mt19937_64& rng, int depth) {
  if (depth > 0) engine.eval(seq, random_tokens(rng, engine.config().n_vocab, depth), false);
}

double time_prefill(Engine& engine, const BenchOptions& o, std::mt19937_64& rng, int n, int depth) {
  auto seq = engine.new_sequence(bench_memory(o, int64_t{depth} + n));
  fill_depth(engine, *seq, rng, depth);
  const auto tokens = random_tokens(rng, engine.config().n_vocab, n);
  const auto t0 = Clock::now();
  const auto& logits = engine.eval(*seq, tokens, false);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  g_sink = logits[0];
  return s;
}

// tgN with S sequences: S fresh sequences decode together, one token each per step (one forward
// pass of S parts, weights read once for all, as the server batches its sessions).
double time_decode(Engine& engine, const BenchOptions& o, std::mt19937_64& rng, int n, int n_seq, int depth) {
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<std::vector<int32_t>> tokens;
  for (int s = 0; s < n_seq; ++s) {
    seqs.push_back(engine.new_sequence(bench_memory(o, int64_t{depth} + n + 1)));
    fill_depth(engine, *seqs.back(), rng, depth);
    tokens.push_back(random_tokens(rng, engine.config().n_vocab, n + 1));
  }
  std::vector<BatchPart> parts(n_seq);
  auto step = [&](int i) {
    for (int s = 0; s < n_seq; ++s) parts[s] = BatchPart{seqs[s].get(), std::span(tokens[s].data() + i, 1)};
    g_sink = engine.forward(parts)[0];
  };
  step(0);
  const auto t0 = Clock::now();
  for (int i = 1; i <= n; ++i) step(i);
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Result measure(Engine& engine, const BenchOptions& o, bool prefill, int n, int n_seq, int depth) {
  Result r;
  r.test = (prefill ? "pp" : "tg") + std::to_string(n) + (n_seq > 1 ? "x" + std::to_string(n_seq) : "") +
           (depth > 0 ? " @ d" + std::to_string(depth) : "");
  (prefill ? r.n_prompt : r.n_gen) = n;
  r.n_depth = depth;
  std::mt19937_64 rng(o.seed);
  auto once = [&] {
    return prefill ? time_prefill(engine, o, rng, n, depth) : time_decode(engine, o, rng, n, n_seq, depth);
  };
  if (prefill) once();
  else time_decode(engine, o, rng, std::min(n, 4), n_seq, std::min(depth, 16));  // warm-up
  for (int i = 0; i < o.reps; ++i) {
    const double s = once();
    r.seconds.push_back(s);
    r.tps.push_back(double(n) * n_seq / std::max(s, 1e-12));
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Memory bandwidth, STREAM-like: each test streams arrays much larger than the caches, split
// across the threads; the best of several runs counts (as STREAM reports). "read" sums an array
// (what decode does to the weights), "copy" and "triad" are STREAM's.

__attribute__((target_clones("avx512f", "avx2", "default")))
uint64_t sum_words(const uint64_t* p, int64_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  for (; i < n; ++i) a += p[i];
  return a + b + c + d;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void copy_floats(const float* __restrict a, float* __restrict b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) b[i] = a[i];
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void triad_floats(const float* __restrict a, const float* __restrict b, float* __restrict c,
                  float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) c[i] = a[i] + s * b[i];
}

struct Buffer {
  void* p = nullptr;
  size_t bytes = 0;
  Buffer(size_t n, bool huge) : bytes(n) {
    p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("bench: cannot allocate ", n, " bytes");
    ::madvise(p, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  }
  ~Buffer() { ::munmap(p, bytes); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};


template <typename F>
ProbeResult best_of(const std::string& name, int runs, double bytes, F&& f) {
  ProbeResult r{name, 0, 0};
  f();  // warm-up: faults the pages in
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    f();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double gbps = bytes / s / 1e9;
    r.best = std::max(r.best, gbps);
    r.mean += gbps / runs;
  }
  return r;
}

std::vector<ProbeResult> probe_bandwidth(int threads, int64_t mib, int runs,
                                             const Model* model) {
  ThreadPool pool(threads);
  const size_t bytes = static_cast<size_t>(mib) << 20;
  const int64_t n_floats = static_cast<int64_t>(bytes / sizeof(float));
  std::vector<ProbeResult> out;
  std::vector<uint64_t> partial(threads);
  auto read_test = [&](const void* data, size_t n_bytes) {
    const auto* w = static_cast<const uint64_t*>(data);
    const int64_t n = static_cast<int64_t>(n_bytes / 8);
    pool.run([&](int t) {
      const int64_t b = n * t / threads / 8 * 8, e = t + 1 == threads ? n : n * (t + 1) / threads / 8 * 8;
      partial[t] = sum_words(w + b, e - b);
    });
    uint64_t s = 0;
    for (uint64_t x : partial) s += x;
    g_sink = static_cast<float>(s);
  };
  for (bool huge : {false, true}) {
    Buffer a(bytes, huge);
    pool.parallel_for_aligned(n_floats, 1024, [&](int64_t b, int64_t e) {
      std::fill(static_cast<float*>(a.p) + b, static_cast<float*>(a.p) + e, 1.0f);
    });
    out.push_back(best_of(huge ? "read (2M pages)" : "read (4K pages)", runs, bytes,
                          [&] { read_test(a.p, bytes); }));
    if (!huge) continue;
    Buffer b(bytes, true), c(bytes, true);
    pool.parallel_for_aligned(n_floats, 1024, [&](int64_t lo, int64_t hi) {
      std::fill(static_cast<float*>(b.p) + lo, static_cast<float*>(b.p) + hi, 2.0f);
      std::fill(static_cast<float*>(c.p) + lo, static_cast<float*>(c.p) + hi, 0.0f);
    });
    const auto* fa = static_cast<const float*>(a.p);
    const auto* fb = static_cast<const float*>(b.p);
    auto* fc = static_cast<float*>(c.p);
    // STREAM counts the bytes each kernel names: copy reads one array and writes one; triad
    // reads two and writes one.
    out.push_back(best_of("copy (2M pages)", runs, 2.0 * bytes, [&] {
      pool.parallel_for_aligned(n_floats, 1024, [&](int64_t lo, int64_t hi) { copy_floats(fa + lo, fc + lo, hi - lo); });
    }));
    out.push_back(best_of("triad (2M pages)", runs, 3.0 * bytes, [&] {
      pool.parallel_for_aligned(n_floats, 1024, [&](int64_t lo, int64_t hi) {
        triad_floats(fa + lo, fb + lo, fc + lo, 3.0f, hi - lo);
      });
    }));
  }
  if (model) {
    // The model file as decode reads it: the page-cache pages behind the mapping.
    const uint8_t* lo = nullptr;
    const uint8_t* hi = nullptr;
    for (const auto& t : model->file().tensors()) {
      if (!lo || t.data < lo) lo = t.data;
      if (!hi || t.data + t.nbytes > hi) hi = t.data + t.nbytes;
    }
    const size_t n = static_cast<size_t>(hi - lo) & ~size_t{63};
    out.push_back(best_of("read (model weights, file mapping)", runs, static_cast<double>(n),
                          [&] { read_test(lo, n); }));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

std::string today() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&now));
  return buf;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

// One probe's results at t threads: a Markdown table, or JSON objects with the fields
// KIND_test, threads, best_UNIT, mean_UNIT (and mib for the bandwidth probe), cpu and date.
void report_probe(const BenchOptions& o, std::vector<JsonObject>& json, int t, const std::string& title,
                  const char* unit_label, const char* kind, const char* unit, const std::vector<ProbeResult>& results,
                  int64_t mib = 0) {
  if (!o.json) {
    std::printf("| %s | threads | best %s | mean %s |\n", title.c_str(), unit_label, unit_label);
    std::printf("| --- | ---: | ---: | ---: |\n");
  }
  for (const auto& r : results) {
    if (o.json) {
      JsonObject row;
      row.add(cat(kind, "_test"), r.test)
          .add("threads", t)
          .add(cat("best_", unit), r.best)
          .add(cat("mean_", unit), r.mean);
      if (mib > 0) row.add("mib", mib);
      json.push_back(row.add("cpu", cpu_model()).add("date", today()));
    } else {
      std::printf("| %s | %d | %.1f | %.1f |\n", r.test.c_str(), t, r.best, r.mean);
    }
  }
  std::fflush(stdout);
}

int run_bench(BenchOptions& o) {
  if (o.threads.empty()) o.threads.push_back(std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 8));
  for (int t : o.threads)
    if (t < 1) fail("-t: thread counts must be at least 1");
  std::vector<JsonObject> json;
  const std::string isa(kernels::isa_name(kernels::active_isa()));

  std::vector<BenchModel> models;
  const Residency residency = o.no_mmap ? Residency::read : Residency::mapped;
  for (const auto& p : o.models) models.push_back(load_model(p, false, residency));
  for (const auto& s : o.synth) models.push_back(synth_model(s, residency));
  const bool probes_only = (o.bandwidth || o.peak) && o.models.empty() && o.synth.empty();
  if (models.empty() && !probes_only) models.push_back(load_model(default_model_path(), false));
  if (o.mlock)
    for (const auto& m : models) m.model->lock_in_memory();

  if (o.bandwidth) {
    for (int t : o.threads)
      report_probe(o, json, t, cat("memory bandwidth (", o.bandwidth_mib, " MiB arrays)"), "GB/s", "bandwidth", "gbps",
                   probe_bandwidth(t, o.bandwidth_mib, std::max(o.reps, 3),
                                   models.empty() ? nullptr : models.front().model.get()),
                   o.bandwidth_mib);
    if (!o.json) std::printf("\n");
  }
  if (o.peak) {
    for (int t : o.threads)
      report_probe(o, json, t, "arithmetic peak (a multiply-add is 2 ops)", "Gops/s", "peak", "gops",
                   probe_peak(t, std::max(o.reps, 3)));
    if (!o.json) std::printf("\n");
  }
  if (probes_only) {
    if (o.json) std::printf("%s\n", json_array(json).c_str());
    return 0;
  }

  if (!o.json) {
    std::printf("| model | size | params | type | threads | test | t/s |\n");
    std::printf("| --- | ---: | ---: | --- | ---: | --- | ---: |\n");
  }
  for (const auto& m : models) {
    for (int t : o.threads) {
      Engine engine(m.model, t);
      std::vector<std::tuple<bool, int, int, int>> tests;  // prefill, tokens, sequences, depth
      for (int d : o.depths) {
        for (int n : o.n_prompt)
          if (n > 0) tests.emplace_back(true, n, 1, d);
        for (int n : o.n_gen)
          if (n > 0)
            for (int n_seq : o.sequences) tests.emplace_back(false, n, n_seq, d);
      }
      for (const auto& [prefill, n, n_seq, depth] : tests) {
        const Result r = measure(engine, o, prefill, n, n_seq, depth);
        const Stats s = stats(r.tps);
        if (o.json) {
          std::vector<double> ns;
          for (double sec : r.seconds) ns.push_back(sec * 1e9);
          json.push_back(JsonObject()
                             .add("model", m.label)
                             .add("model_path", m.temporary ? std::string() : m.path)
                             .add("size_bytes", m.file_size)
                             .add("n_params", m.model->n_params())
                             .add("type", std::string(type_name(m.model->main_type())))
                             .add("threads", t)
                             .add("test", r.test)
                             .add("n_prompt", r.n_prompt)
                             .add("n_gen", r.n_gen)
                             .add("n_seq", n_seq)
                             .add("n_depth", r.n_depth)
                             .add("n_batch", o.batch)
                             .add("kv_type", o.kv_type)
                             .add("avg_ts", s.mean)
                             .add("stddev_ts", s.stddev)
                             .add("samples_ts", r.tps)
                             .add("samples_ns", ns)
                             .add("isa", isa)
                             .add("cpu", cpu_model())
                             .add("date", today()));
        } else {
          std::printf("| %s | %s | %s | %s | %d | %s | %.2f ± %.2f |\n", m.label.c_str(),
                      human_size(m.file_size).c_str(), human_params(m.model->n_params()).c_str(),
                      std::string(type_name(m.model->main_type())).c_str(), t, r.test.c_str(),
                      s.mean, s.stddev);
          std::fflush(stdout);
        }
      }
    }
  }
  if (o.json) std::printf("%s\n", json_array(json).c_str());
  return 0;
}

Registration reg(
    "bench", "Measure prefill and decode speed (like llama-bench), memory bandwidth and arithmetic peak",
    [](CLI::App& sub) {
      auto o = std::make_shared<BenchOptions>();
      sub.footer(
          "ppN: N random tokens into a fresh sequence in batches of -b; tgN: N single-token steps "
          "after one untimed token; with -d D, either starts from D untimed tokens of context. Each "
          "test runs once to warm up, then -r times: mean ± "
          "standard deviation of tokens/s. Lists (-p 128,512 -t 1,2) run every combination. "
          "With neither -m nor --synth, the built-in random-weight model. --synth SPEC writes a "
          "random-weight model first: comma-separated fields arch, dim, layers, heads, kv_heads, "
          "ff, vocab, seed, type (e.g. dim=1024,layers=16,type=q4_0), or '254m,q4_0' for the "
          "254M-parameter shape of the llama.cpp comparison (docs/benchmarks.md).");
      sub.add_option("-m,--model", o->models, "GGUF model file(s)")->check(existing_file());
      sub.add_option("--synth", o->synth, "Random-weight model spec(s) to build and measure");
      sub.add_option("-p,--n-prompt", o->n_prompt, "Prompt lengths to measure (0: none)")
          ->delimiter(',')->check(CLI::Range(0, 1 << 20));
      sub.add_option("-n,--n-gen", o->n_gen, "Decode lengths to measure (0: none)")
          ->delimiter(',')->check(CLI::Range(0, 1 << 20));
      sub.add_option("-s,--sequences", o->sequences,
                     "Sequences decoding together in tgN (one token each per forward pass, as the server "
                     "batches sessions): tgNxS, aggregate tokens/s")
          ->delimiter(',')->check(CLI::Range(1, 256));
      sub.add_option("-d,--n-depth", o->depths,
                     "Tokens already in each sequence's cache when a test starts (untimed), as llama-bench's "
                     "-d: the test is named ppN @ dD / tgN @ dD")
          ->delimiter(',')->check(CLI::Range(0, 1 << 20));
      sub.add_option("-t,--threads", o->threads, "Thread counts (default: all cores, at most 8)")
          ->delimiter(',')->check(CLI::Range(1, 1024));
      sub.add_option("-r,--repetitions", o->reps, "Timed runs per test")->check(CLI::Range(1, 1000));
      sub.add_option("-b,--batch-size", o->batch, "Most tokens per forward pass")->check(CLI::Range(1, 1 << 16));
      sub.add_option("--cache-type", o->kv_type, "KV storage type: f16 or f32")
          ->check(CLI::IsMember({"f16", "f32"}));
      sub.add_option("--seed", o->seed, "Seed of the random tokens");
      sub.add_flag("--json", o->json, "Print results as JSON");
      sub.add_flag("--mlock", o->mlock,
                   "Keep the weights in RAM (mlock), so a busy machine's memory reclaim cannot evict them "
                   "between runs");
      sub.add_flag("--no-mmap", o->no_mmap,
                   "Read the weights into memory (2 MiB pages where the system allows) instead of mapping "
                   "the file (as llama-bench -mmp 0)");
      sub.add_flag("--bandwidth", o->bandwidth,
                   "Measure memory bandwidth (STREAM-like read, copy, triad) at each thread count");
      sub.add_flag("--peak", o->peak,
                   "Measure the arithmetic peak (f32 FMA, bf16 and int8 dot products in registers) at each thread "
                   "count, to set prefill against");
      sub.add_option("--bandwidth-mib", o->bandwidth_mib, "Array size of the bandwidth probe, MiB")
          ->check(CLI::Range(int64_t{16}, int64_t{1} << 16));
      return [o] { return run_bench(*o); };
    });

}  // namespace
}  // namespace endless::cli
