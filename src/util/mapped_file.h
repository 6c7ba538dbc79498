// A read-only memory mapping of a whole file. Model weights are used in place from the mapping,
// never copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace endless {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error naming the path and the reason
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

  // Pins the mapping in RAM (mlock), reading it all in first, so the kernel never drops its pages
  // and reads them again from disk: memory reclaim on a busy machine otherwise makes decode speed
  // depend on what else ran. Throws Error with the reason (often RLIMIT_MEMLOCK).
  void lock_in_memory() const;

 private:
  void release();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace endless
