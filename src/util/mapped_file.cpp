#include "util/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "util/error.h"

namespace endless {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Anonymous memory of `size` bytes (rounded up to 2 MiB pages) holding the file's bytes, then
// made read-only like a mapping of the file.
uint8_t* read_into_memory(int fd, const std::string& path, size_t size, size_t* mapped) {
  const size_t rounded = (size + kHugePage - 1) / kHugePage * kHugePage;
  // Over-allocate by one huge page to place the block on a 2 MiB boundary.
  void* raw = ::mmap(nullptr, rounded + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) fail("cannot allocate ", size >> 20, " MiB to read '", path, "' into: ", std::strerror(errno));
  auto* base = static_cast<uint8_t*>(raw);
  auto* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(base) + kHugePage - 1) / kHugePage * kHugePage);
  if (aligned > base) ::munmap(base, aligned - base);
  const size_t tail = (base + rounded + kHugePage) - (aligned + rounded);
  if (tail > 0) ::munmap(aligned + rounded, tail);
  ::madvise(aligned, rounded, MADV_HUGEPAGE);  // advice only: 4 KiB pages where refused
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, aligned + done, std::min<size_t>(size - done, size_t{1} << 30), static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::munmap(aligned, rounded);
      fail("cannot read '", path, "': ", n < 0 ? std::strerror(err) : "the file ended early");
    }
    done += static_cast<size_t>(n);
  }
  ::mprotect(aligned, rounded, PROT_READ);
  *mapped = rounded;
  return aligned;
}

}  // namespace

MappedFile::MappedFile(const std::string& path, Residency residency) : residency_(residency), path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("cannot stat '", path, "': ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'", path, "' is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0 && residency == Residency::read) {
    try {
      data_ = read_into_memory(fd, path, size_, &mapped_size_);
    } catch (...) {
      ::close(fd);
      throw;
    }
  } else if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail("cannot map '", path, "': ", std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(p);
    mapped_size_ = size_;
  }
  ::close(fd);
}

MappedFile::~MappedFile() { release(); }

void lock_pages(const void* p, size_t n, const std::string& what) {
  if (n > 0 && ::mlock(p, n) != 0)
    fail("cannot lock the ", n >> 20, " MiB of ", what, " in memory: ", std::strerror(errno),
         errno == ENOMEM || errno == EPERM ? " (raise the limit with `ulimit -l`)" : "");
}

void MappedFile::lock_in_memory() const {
  if (data_ == nullptr) return;
  // The ranges between dropped pages.
  size_t at = 0;
  for (const auto& [b, e] : dropped_) {
    if (b > at) lock_pages(data_ + at, b - at, cat("'", path_, "'"));
    at = std::max(at, e);
  }
  if (at < size_) lock_pages(data_ + at, size_ - at, cat("'", path_, "'"));
}

void MappedFile::drop(const uint8_t* p, size_t n) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (data_ == nullptr || p < data_ || p + n > data_ + size_ || begin >= end) return;
  void* at = reinterpret_cast<void*>(begin);
  const size_t offset = begin - reinterpret_cast<uintptr_t>(data_);
  if (residency_ == Residency::mapped) {
    if (::madvise(at, end - begin, MADV_DONTNEED) != 0) return;
  } else {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    void* r = ::mmap(at, end - begin, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, static_cast<off_t>(offset));
    ::close(fd);
    if (r == MAP_FAILED) return;
  }
  const std::pair<size_t, size_t> range{offset, offset + (end - begin)};
  dropped_.insert(std::upper_bound(dropped_.begin(), dropped_.end(), range), range);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_size_(std::exchange(other.mapped_size_, 0)),
      residency_(other.residency_),
      path_(std::move(other.path_)),
      dropped_(std::move(other.dropped_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_size_ = std::exchange(other.mapped_size_, 0);
    residency_ = other.residency_;
    path_ = std::move(other.path_);
    dropped_ = std::move(other.dropped_);
  }
  return *this;
}

void MappedFile::release() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), mapped_size_);
  data_ = nullptr;
  size_ = 0;
  mapped_size_ = 0;
}

}  // namespace endless
