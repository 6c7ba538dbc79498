#include "model/snapshot.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "util/error.h"

namespace endless {
namespace {

constexpr char kMagic[8] = {'E', 'N', 'D', 'L', 'S', 'N', 'A', 'P'};
// 2: the sirllm and infllm settings; 3: infllm's scoring; 4: infllm's index search; 5: infllm's
// key half-life, whitening and consensus layers; 6: only the slots written so far (a young
// session's snapshot holds its tokens, not its whole cache). 1 to 5 are still read.
constexpr uint32_t kVersion = 6;

uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

struct Out {
  std::vector<uint8_t> b;
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
};

struct In {
  const uint8_t* p;
  size_t n, pos = 0;
  const std::string& path;
  template <typename T>
  T get() {
    if (n - pos < sizeof(T)) fail(path, ": snapshot is truncated");
    T v;
    std::memcpy(&v, p + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(uint32_t max_len = 64) {
    const uint32_t len = get<uint32_t>();
    if (len > max_len || n - pos < len) fail(path, ": snapshot is corrupt (bad string)");
    std::string s(reinterpret_cast<const char*>(p + pos), len);
    pos += len;
    return s;
  }
};

void write_durably(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create '", tmp, "': ", std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot write '", tmp, "': ", std::strerror(err));
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) fail("cannot sync '", tmp, "': ", std::strerror(errno));
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno));
  // The rename itself is durable only once the directory is synced.
  const auto dir = std::filesystem::path(path).parent_path();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

void save_sequence(const Sequence& seq, const ModelConfig& model, const std::string& path) {
  Out o;
  o.b.insert(o.b.end(), kMagic, kMagic + 8);
  o.put<uint32_t>(kVersion);
  o.put<int32_t>(model.n_layers);
  o.put<int32_t>(model.kv_dim());
  o.put<int64_t>(model.n_vocab);
  const MemoryConfig& c = seq.config;
  o.str(c.policy);
  o.put<int64_t>(c.n_ctx);
  o.put<int32_t>(c.n_sink);
  o.put<int64_t>(c.window);
  o.put<int64_t>(c.n_keep);
  o.put<uint32_t>(static_cast<uint32_t>(c.kv_type));
  o.put<int32_t>(c.max_batch);
  o.put<int64_t>(c.sir_keep);
  o.put<double>(c.sir_decay);
  o.put<uint32_t>(static_cast<uint32_t>(c.turn_marker.size()));
  for (int32_t t : c.turn_marker) o.put<int32_t>(t);
  o.put<int32_t>(c.block_size);
  o.put<int32_t>(c.block_reps);
  o.put<int32_t>(c.top_k);
  o.put<int64_t>(c.mem_distance);
  o.put<uint8_t>(c.mem_compact ? 1 : 0);
  o.put<int64_t>(c.mem_ram_mib);
  o.str(c.memory_dir);
  o.put<int32_t>(c.mem_hot_blocks);
  o.put<int32_t>(c.mem_skip_layers);
  o.str(c.mem_score);
  o.put<int32_t>(c.mem_key_window);
  o.put<int32_t>(c.mem_retrieve_every);
  o.put<int64_t>(c.sir_decay_every);
  o.put<int32_t>(c.mem_index_group);
  o.put<int32_t>(c.mem_index_beam);
  o.put<int32_t>(c.mem_key_parts);
  o.put<double>(c.sir_max_nll);
  o.put<uint8_t>(c.mem_consensus ? 1 : 0);
  o.put<double>(c.mem_key_halflife);
  o.put<uint8_t>(c.mem_key_whiten ? 1 : 0);
  o.put<int32_t>(c.mem_consensus_from);
  const auto state = seq.policy->save_state();
  o.put<uint32_t>(static_cast<uint32_t>(state.size()));
  for (int64_t v : state) o.put<int64_t>(v);
  const KVStore& s = seq.store;
  o.put<int64_t>(s.capacity());
  o.put<int64_t>(s.written());  // the slots from there on are zeros in every layer
  const size_t layer_bytes = static_cast<size_t>(s.written()) * s.kv_dim() * s.elem_size();
  o.b.reserve(o.b.size() + 2 * layer_bytes * s.n_layers() + 8);
  for (int l = 0; l < s.n_layers(); ++l) {  // keys as rows, slot by slot, whatever the cache's layout
    const size_t at = o.b.size();
    o.b.resize(at + layer_bytes);
    s.get_keys(l, 0, s.written(), o.b.data() + at);
    o.b.insert(o.b.end(), s.value(l, 0), s.value(l, 0) + layer_bytes);
  }
  o.put<uint64_t>(fnv1a(o.b.data(), o.b.size()));
  write_durably(path, o.b);
}

std::unique_ptr<Sequence> load_sequence(const Engine& engine, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open snapshot '", path, "'");
  const std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), {});
  if (b.size() < 8 + 4 + 8 || std::memcmp(b.data(), kMagic, 8) != 0)
    fail(path, ": not an endless snapshot");
  uint64_t stored;
  std::memcpy(&stored, b.data() + b.size() - 8, 8);
  if (fnv1a(b.data(), b.size() - 8) != stored) fail(path, ": snapshot checksum mismatch (corrupt)");
  In in{b.data(), b.size() - 8, 8, path};
  const uint32_t version = in.get<uint32_t>();
  if (version < 1 || version > kVersion)
    fail(path, ": snapshot version ", version, " (this build reads 1 to ", kVersion, ")");
  const ModelConfig& m = engine.config();
  const int32_t layers = in.get<int32_t>(), kv_dim = in.get<int32_t>();
  const int64_t vocab = in.get<int64_t>();
  if (layers != m.n_layers || kv_dim != m.kv_dim() || vocab != m.n_vocab)
    fail(path, ": snapshot was made with another model (", layers, " layers, kv dim ", kv_dim,
         ", vocab ", vocab, ")");
  MemoryConfig c;
  c.policy = in.str();
  c.n_ctx = in.get<int64_t>();
  c.n_sink = in.get<int32_t>();
  c.window = in.get<int64_t>();
  c.n_keep = in.get<int64_t>();
  c.kv_type = static_cast<TensorType>(in.get<uint32_t>());
  c.max_batch = in.get<int32_t>();
  if (version >= 2) {
    c.sir_keep = in.get<int64_t>();
    c.sir_decay = in.get<double>();
    const uint32_t n_marker = in.get<uint32_t>();
    if (n_marker > 4096) fail(path, ": snapshot is corrupt (turn marker)");
    c.turn_marker.resize(n_marker);
    for (auto& t : c.turn_marker) t = in.get<int32_t>();
    c.block_size = in.get<int32_t>();
    c.block_reps = in.get<int32_t>();
    c.top_k = in.get<int32_t>();
    c.mem_distance = in.get<int64_t>();
    c.mem_compact = in.get<uint8_t>() != 0;
    c.mem_ram_mib = in.get<int64_t>();
    c.memory_dir = in.str(4096);
    c.mem_hot_blocks = in.get<int32_t>();
  }
  if (version >= 3) {
    c.mem_skip_layers = in.get<int32_t>();
    c.mem_score = in.str(16);
    c.mem_key_window = in.get<int32_t>();
    c.mem_retrieve_every = in.get<int32_t>();
    c.sir_decay_every = in.get<int64_t>();
  }
  if (version >= 4) {
    c.mem_index_group = in.get<int32_t>();
    c.mem_index_beam = in.get<int32_t>();
    c.mem_key_parts = in.get<int32_t>();
    c.sir_max_nll = in.get<double>();
    c.mem_consensus = in.get<uint8_t>() != 0;
  } else {
    c.sir_max_nll = 0;  // sirllm had no noise ceiling
  }
  if (version >= 5) {
    c.mem_key_halflife = in.get<double>();
    c.mem_key_whiten = in.get<uint8_t>() != 0;
    c.mem_consensus_from = in.get<int32_t>();
  }
  // What infllm did before each setting was stored (the defaults have changed since).
  if (version < 2) {
    c.block_size = 128;
    c.top_k = 16;
    c.mem_distance = 0;
  }
  if (version < 3) {
    c.mem_skip_layers = 0;
    c.use_query_scoring();
    c.mem_key_window = 32;
    c.mem_retrieve_every = 1;
  }
  if (version < 4) {
    c.mem_key_parts = 1;
    c.mem_consensus = false;
  }
  if (version < 5) {
    c.mem_key_halflife = 0;
    c.mem_key_whiten = false;
    c.mem_consensus_from = -1;
  }
  auto seq = engine.new_sequence(c);
  const uint32_t n_state = in.get<uint32_t>();
  if (n_state > (in.n - in.pos) / 8) fail(path, ": snapshot is corrupt (policy state)");
  std::vector<int64_t> state(n_state);
  for (auto& v : state) v = in.get<int64_t>();
  seq->policy->load_state(state);
  KVStore& s = seq->store;
  if (in.get<int64_t>() != s.capacity()) fail(path, ": snapshot is corrupt (cache size)");
  const int64_t written = version >= 6 ? in.get<int64_t>() : s.capacity();
  if (written < 0 || written > s.capacity()) fail(path, ": snapshot is corrupt (slots written)");
  const size_t layer_bytes = static_cast<size_t>(written) * s.kv_dim() * s.elem_size();
  for (int l = 0; l < s.n_layers(); ++l) {
    if (in.n - in.pos < 2 * layer_bytes) fail(path, ": snapshot is truncated");
    s.set_keys(l, 0, written, b.data() + in.pos);
    std::memcpy(s.value(l, 0), b.data() + in.pos + layer_bytes, layer_bytes);
    in.pos += 2 * layer_bytes;
  }
  if (in.pos != in.n) fail(path, ": snapshot has trailing bytes (corrupt)");
  return seq;
}

}  // namespace endless
