#include "memory/block_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "util/error.h"

namespace endless {
namespace {

constexpr char kMagic[8] = {'E', 'N', 'D', 'L', 'S', 'M', 'E', 'M'};
constexpr size_t kHeader = 64;

// FNV-1a over 64-bit words (then the tail bytes): a checksum, not a cryptographic hash.
uint64_t checksum(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

void header_bytes(const BlockGeometry& g, uint8_t* out) {
  std::memset(out, 0, kHeader);
  std::memcpy(out, kMagic, 8);
  const uint32_t fields[6] = {BlockStore::kVersion, static_cast<uint32_t>(g.n_layers),
                              static_cast<uint32_t>(g.kv_dim), static_cast<uint32_t>(g.block_size),
                              static_cast<uint32_t>(g.elem_size), static_cast<uint32_t>(g.planes)};
  std::memcpy(out + 8, fields, sizeof fields);
  const uint64_t h = checksum(out, kHeader - 8);
  std::memcpy(out + kHeader - 8, &h, 8);
}

void write_all(int fd, const uint8_t* p, size_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("memory file '", path, "': cannot write: ", std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

// Reads n bytes; false if the file ends first.
bool read_all(int fd, uint8_t* p, size_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("memory file '", path, "': cannot read: ", std::strerror(errno));
    if (r == 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

}  // namespace

BlockStore::BlockStore(const BlockGeometry& g, size_t ram_bytes, const std::string& dir, int hot,
                       const std::string& ext)
    : g_(g), ram_budget_(ram_bytes), dir_(dir), ext_(ext), hot_cap_(std::max(1, hot)) {
  if (g.n_layers < 1 || g.kv_dim < 1 || g.block_size < 1 || (g.elem_size != 2 && g.elem_size != 4) ||
      (g.planes != 1 && g.planes != 2))
    fail("block store: bad geometry");
}

BlockStore BlockStore::reopen(const BlockGeometry& g, size_t ram_bytes, const std::string& path,
                              int64_t n_blocks, int hot) {
  BlockStore s(g, ram_bytes, std::filesystem::path(path).parent_path().string(), hot);
  s.path_ = path;
  s.fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (s.fd_ < 0) fail("memory file '", path, "': cannot open: ", std::strerror(errno));
  s.keep_file_ = true;  // not ours to remove
  uint8_t want[kHeader], got[kHeader];
  header_bytes(g, want);
  if (!read_all(s.fd_, got, kHeader, 0, path)) fail("memory file '", path, "' is truncated (no header)");
  if (std::memcmp(got, kMagic, 8) != 0) fail("memory file '", path, "' is not an endless memory file");
  uint32_t version;
  std::memcpy(&version, got + 8, 4);
  uint64_t h;
  std::memcpy(&h, got + kHeader - 8, 8);
  if (h != checksum(got, kHeader - 8)) fail("memory file '", path, "': header checksum mismatch (corrupt)");
  if (version != kVersion)
    fail("memory file '", path, "' has version ", version, " (this build reads ", kVersion, ")");
  if (std::memcmp(got, want, kHeader) != 0)
    fail("memory file '", path, "' was written for another model or block size");
  struct stat st;
  if (::fstat(s.fd_, &st) != 0) fail("memory file '", path, "': cannot stat: ", std::strerror(errno));
  if (n_blocks < 0 || static_cast<uint64_t>(st.st_size) < s.record_offset(n_blocks))
    fail("memory file '", path, "' is truncated: it holds fewer than the ", n_blocks, " blocks expected");
  s.n_blocks_ = s.ram_first_ = n_blocks;
  return s;
}

BlockStore::BlockStore(BlockStore&& o) noexcept { *this = std::move(o); }

BlockStore& BlockStore::operator=(BlockStore&& o) noexcept {
  if (this == &o) return *this;
  close();
  g_ = o.g_;
  ram_budget_ = o.ram_budget_;
  dir_ = std::move(o.dir_);
  path_ = std::move(o.path_);
  ext_ = std::move(o.ext_);
  fd_ = o.fd_;
  keep_file_ = o.keep_file_;
  n_blocks_ = o.n_blocks_;
  first_alive_ = o.first_alive_;
  ram_first_ = o.ram_first_;
  ram_ = std::move(o.ram_);
  hot_cap_ = o.hot_cap_;
  lru_ = std::move(o.lru_);
  hot_ = std::move(o.hot_);
  disk_reads_ = o.disk_reads_;
  o.fd_ = -1;
  o.path_.clear();
  return *this;
}

BlockStore::~BlockStore() { close(); }

void BlockStore::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    if (!keep_file_ && !path_.empty()) ::unlink(path_.c_str());
  }
}

uint64_t BlockStore::record_offset(int64_t b) const {
  return kHeader + static_cast<uint64_t>(b) * record_bytes();
}

size_t BlockStore::ram_bytes() const {
  return static_cast<size_t>(in_ram()) * g_.block_bytes() + hot_.size() * (g_.layer_bytes() + 8);
}

void BlockStore::open_file() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    path_ = (std::filesystem::path(dir_) /
             cat("infllm-", ::getpid(), "-", counter++, "-", static_cast<uint64_t>(now) % 1000000007, ".", ext_))
                .string();
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) fail("cannot create a memory file in '", dir_, "': ", std::strerror(errno));
  uint8_t h[kHeader];
  header_bytes(g_, h);
  write_all(fd_, h, kHeader, 0, path_);
}

void BlockStore::spill_oldest() {
  if (dir_.empty()) {
    ram_.pop_front();
    first_alive_ = ++ram_first_;
    return;
  }
  if (fd_ < 0) open_file();
  const std::vector<uint8_t>& block = ram_.front();
  std::vector<uint8_t> rec(record_bytes());
  const size_t lb = g_.layer_bytes();
  for (int l = 0; l < g_.n_layers; ++l) {
    uint8_t* r = rec.data() + l * (lb + 8);
    std::memcpy(r, block.data() + l * lb, lb);
    const uint64_t h = checksum(r, lb);
    std::memcpy(r + lb, &h, 8);
  }
  write_all(fd_, rec.data(), rec.size(), record_offset(ram_first_), path_);
  ram_.pop_front();
  ++ram_first_;
}

void BlockStore::append(const uint8_t* data) {
  ram_.emplace_back(data, data + g_.block_bytes());
  ++n_blocks_;
  while (!ram_.empty() && static_cast<size_t>(in_ram()) * g_.block_bytes() > ram_budget_) spill_oldest();
}

void BlockStore::skip(int64_t n) {
  if (n_blocks_ != 0 || n < 0) fail("block store: skip on a store that holds blocks");
  n_blocks_ = first_alive_ = ram_first_ = n;
}

void BlockStore::forget_before(int64_t b) {
  if (fd_ >= 0 || !dir_.empty()) fail("block store: only a store without a file forgets on request");
  while (!ram_.empty() && ram_first_ < b) {
    ram_.pop_front();
    first_alive_ = ++ram_first_;
  }
}

void BlockStore::sync() {
  if (fd_ >= 0 && ::fsync(fd_) != 0) fail("memory file '", path_, "': cannot sync: ", std::strerror(errno));
}

const uint8_t* BlockStore::layer(int64_t b, int layer) {
  if (b < first_alive_ || b >= n_blocks_ || layer < 0 || layer >= g_.n_layers)
    fail("block store: block ", b, " layer ", layer, " is not held");
  const size_t lb = g_.layer_bytes();
  if (b >= ram_first_) return ram_[b - ram_first_].data() + layer * lb;
  const int64_t key = b * g_.n_layers + layer;
  if (auto it = hot_.find(key); it != hot_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first.data();
  }
  std::vector<uint8_t> buf;
  if (static_cast<int>(hot_.size()) >= hot_cap_) {
    // Reuse the least recently used buffer.
    const int64_t victim = lru_.back();
    lru_.pop_back();
    buf = std::move(hot_[victim].first);
    hot_.erase(victim);
  }
  buf.resize(lb + 8);
  ++disk_reads_;
  if (!read_all(fd_, buf.data(), lb + 8, record_offset(b) + layer * (lb + 8), path_))
    fail("memory file '", path_, "' is truncated: block ", b, " layer ", layer, " is missing");
  uint64_t h;
  std::memcpy(&h, buf.data() + lb, 8);
  if (h != checksum(buf.data(), lb))
    fail("memory file '", path_, "': block ", b, " layer ", layer, " fails its checksum (corrupt)");
  lru_.push_front(key);
  auto& slot = hot_[key];
  slot.first = std::move(buf);
  slot.second = lru_.begin();
  return slot.first.data();
}

}  // namespace endless
