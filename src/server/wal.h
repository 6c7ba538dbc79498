// A write-ahead log: an append-only file of length-prefixed, checksummed records. A record is
// acknowledged only after sync(); after a crash, open() returns every whole record and cuts off
// a torn or corrupt tail, so the file can be appended to again.
//
// File: "ENDLWAL1", then records: u32 payload length, u64 FNV-1a of (length, payload), payload.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace endless::server {

class Wal {
 public:
  struct Opened {
    std::unique_ptr<Wal> wal;
    std::vector<std::string> records;
    uint64_t dropped_bytes = 0;  // torn or corrupt tail cut off
  };
  // Opens an existing log, reading its records. Throws Error when the file cannot be read or is
  // not a log.
  static Opened open(const std::string& path);
  // Creates a new, empty log (durably: the file and its directory entry are synced). Throws Error
  // when the file exists or cannot be created. A log that is not durable never syncs.
  static std::unique_ptr<Wal> create(const std::string& path, bool durable = true);

  // The whole records among the first max_bytes of a log (for reading while it is appended to).
  static std::vector<std::string> read(const std::string& path, uint64_t max_bytes);

  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Writes one record (not yet durable). Throws Error on a write error; the log is then unusable.
  void append(std::string_view payload);
  // Makes every record written so far durable.
  void sync();
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  static constexpr uint32_t kMaxRecord = 64u << 20;

 private:
  // Reads records after the header; returns the offset after the last whole one (0: no header).
  static size_t parse_records(const uint8_t* bytes, size_t size, std::vector<std::string>& records);
  Wal(int fd, std::string path, uint64_t size) : fd_(fd), path_(std::move(path)), size_(size) {}
  int fd_ = -1;
  std::string path_;
  uint64_t size_ = 0;
  bool broken_ = false;
  bool durable_ = true;
};

// Syncs a directory, so that files created, renamed or removed in it stay so after a crash.
void sync_directory(const std::string& dir);

}  // namespace endless::server
