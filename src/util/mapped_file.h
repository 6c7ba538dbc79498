// A whole file, read-only, in memory: by default a mapping of it (model weights are used in place,
// never copied); or, with Residency::read, read into anonymous memory backed by 2 MiB pages where
// the system allows (MADV_HUGEPAGE): decode reads every weight once per token, and huge pages
// spare the TLB misses of 4 KiB pages (this machine reads about 10% faster through them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace endless {

enum class Residency { mapped, read };

// mlock of [p, p + n), or Error naming `what` and the reason (often RLIMIT_MEMLOCK).
void lock_pages(const void* p, size_t n, const std::string& what);

class MappedFile {
 public:
  MappedFile() = default;
  // Throws Error naming the path and the reason.
  explicit MappedFile(const std::string& path, Residency residency = Residency::mapped);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }
  Residency residency() const { return residency_; }

  // Pins the mapping in RAM (mlock), reading it all in first, so the kernel never drops its pages
  // and reads them again from disk: memory reclaim on a busy machine otherwise makes decode speed
  // depend on what else ran. Pages given up with drop() stay out. Throws Error with the reason
  // (often RLIMIT_MEMLOCK).
  void lock_in_memory() const;

  // The bytes [p, p + n) will not be read again for a while (a model keeps them rearranged
  // elsewhere): the whole pages among them leave this process's memory, and come back from the
  // file if they are read after all. A mapping drops them (MADV_DONTNEED); a file read into memory
  // maps the file's own pages over them. Best effort: where the system refuses, they stay.
  void drop(const uint8_t* p, size_t n);

 private:
  void release();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_size_ = 0;  // of the mapping to release (the file's size rounded up when read)
  Residency residency_ = Residency::mapped;
  std::string path_;
  std::vector<std::pair<size_t, size_t>> dropped_;  // [begin, end) offsets of dropped pages, in order
};

}  // namespace endless
