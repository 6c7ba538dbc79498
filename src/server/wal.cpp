#include "server/wal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "util/error.h"

namespace endless::server {
namespace {

constexpr char kMagic[8] = {'E', 'N', 'D', 'L', 'W', 'A', 'L', '1'};
constexpr size_t kHeader = 4 + 8;

uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("cannot write '", path, "': ", std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

size_t Wal::parse_records(const uint8_t* bytes, size_t size, std::vector<std::string>& records) {
  size_t pos = sizeof kMagic;
  if (size < pos || std::memcmp(bytes, kMagic, sizeof kMagic) != 0) return 0;
  while (size - pos >= kHeader) {
    uint32_t len;
    uint64_t sum;
    std::memcpy(&len, bytes + pos, 4);
    std::memcpy(&sum, bytes + pos + 4, 8);
    if (len > kMaxRecord || size - pos - kHeader < len) break;
    const uint8_t* payload = bytes + pos + kHeader;
    if (fnv1a(payload, len, fnv1a(&len, 4)) != sum) break;
    records.emplace_back(reinterpret_cast<const char*>(payload), len);
    pos += kHeader + len;
  }
  return pos;
}

std::vector<std::string> Wal::read(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes(static_cast<size_t>(max_bytes));
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::pread(fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  std::vector<std::string> records;
  parse_records(bytes.data(), got, records);
  return records;
}

void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open directory '", dir, "': ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) fail("cannot sync directory '", dir, "': ", std::strerror(err));
}

Wal::Opened Wal::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) fail("cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot stat '", path, "': ", std::strerror(err));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t r = ::pread(fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot read '", path, "': ", r == 0 ? "file shrank" : std::strerror(err));
    }
    got += static_cast<size_t>(r);
  }
  Opened out;
  size_t pos = 0;
  if (bytes.size() < sizeof kMagic || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    // A log whose header never reached the disk holds nothing acknowledged; anything else that
    // is not a log is left alone.
    const bool torn_header =
        bytes.size() < sizeof kMagic && (bytes.empty() || std::memcmp(bytes.data(), kMagic, bytes.size()) == 0);
    if (!torn_header) {
      ::close(fd);
      fail("'", path, "' is not an endless session log");
    }
    out.dropped_bytes = bytes.size();
    if (::ftruncate(fd, 0) != 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot truncate '", path, "': ", std::strerror(err));
    }
    write_all(fd, kMagic, sizeof kMagic, path);
    ::fdatasync(fd);
    out.wal.reset(new Wal(fd, path, sizeof kMagic));
    return out;
  }
  pos = parse_records(bytes.data(), bytes.size(), out.records);
  out.dropped_bytes = bytes.size() - pos;
  if (out.dropped_bytes > 0) {
    if (::ftruncate(fd, static_cast<off_t>(pos)) != 0 || ::fdatasync(fd) != 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot cut the torn tail off '", path, "': ", std::strerror(err));
    }
  }
  if (::lseek(fd, static_cast<off_t>(pos), SEEK_SET) < 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot seek in '", path, "': ", std::strerror(err));
  }
  out.wal.reset(new Wal(fd, path, pos));
  return out;
}

std::unique_ptr<Wal> Wal::create(const std::string& path, bool durable) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create '", path, "': ", std::strerror(errno));
  std::unique_ptr<Wal> wal(new Wal(fd, path, 0));
  wal->durable_ = durable;
  write_all(fd, kMagic, sizeof kMagic, path);
  wal->size_ = sizeof kMagic;
  wal->sync();
  if (durable) sync_directory(std::filesystem::path(path).parent_path().string());
  return wal;
}

Wal::~Wal() {
  if (fd_ >= 0) ::close(fd_);
}

void Wal::append(std::string_view payload) {
  if (broken_) fail("the log '", path_, "' is unusable after an earlier write error");
  if (payload.size() > kMaxRecord) fail("a log record of ", payload.size(), " bytes is too large");
  const uint32_t len = static_cast<uint32_t>(payload.size());
  const uint64_t sum = fnv1a(payload.data(), len, fnv1a(&len, 4));
  std::string buf(kHeader + len, '\0');
  std::memcpy(buf.data(), &len, 4);
  std::memcpy(buf.data() + 4, &sum, 8);
  std::memcpy(buf.data() + kHeader, payload.data(), len);
  try {
    write_all(fd_, buf.data(), buf.size(), path_);
  } catch (...) {
    // A partly written record would corrupt the records after it: cut it off, or give up.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 ||
        ::lseek(fd_, static_cast<off_t>(size_), SEEK_SET) < 0)
      broken_ = true;
    throw;
  }
  size_ += buf.size();
}

void Wal::sync() {
  if (!durable_) return;
  if (::fdatasync(fd_) != 0) {
    broken_ = true;  // after a failed fsync the page cache state is unknown
    fail("cannot sync '", path_, "': ", std::strerror(errno));
  }
}

}  // namespace endless::server
