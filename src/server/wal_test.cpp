// The write-ahead log: records come back as written; a torn or corrupt tail is cut off at the last
// whole record, whatever byte the crash stopped at, and the log can be appended to again.
#include "server/wal.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "server/sessions.h"
#include "test_support.h"
#include "util/error.h"

namespace endless::server {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> sample_records() {
  std::vector<std::string> r;
  std::mt19937 rng(3);
  for (int i = 0; i < 40; ++i) {
    std::string s(rng() % 300, '\0');
    for (auto& c : s) c = static_cast<char>(rng());  // any bytes, NULs included
    r.push_back(s);
  }
  r.push_back("");  // an empty record is a record
  return r;
}

TEST(Wal, RecordsComeBackAsWritten) {
  const auto dir = endless::testing::scratch_dir("wal-roundtrip");
  const std::string path = (dir / "a.wal").string();
  const auto records = sample_records();
  {
    auto wal = Wal::create(path);
    for (const auto& r : records) wal->append(r);
    wal->sync();
  }
  auto opened = Wal::open(path);
  EXPECT_EQ(opened.records, records);
  EXPECT_EQ(opened.dropped_bytes, 0u);
  EXPECT_EQ(opened.wal->size(), fs::file_size(path));
  EXPECT_EQ(Wal::read(path, fs::file_size(path)), records);
  EXPECT_THROW(Wal::create(path), Error) << "create must not overwrite a log";
}

TEST(Wal, EveryTornTailIsCutAtTheLastWholeRecord) {
  const auto dir = endless::testing::scratch_dir("wal-torn");
  const std::string path = (dir / "a.wal").string();
  const auto records = sample_records();
  std::vector<uint64_t> ends;  // file size after each record
  {
    auto wal = Wal::create(path);
    for (const auto& r : records) {
      wal->append(r);
      ends.push_back(wal->size());
    }
  }
  std::ifstream in(path, std::ios::binary);
  const std::string full((std::istreambuf_iterator<char>(in)), {});
  for (size_t cut = 0; cut <= full.size(); cut += cut < 64 ? 1 : 29) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(full.data(), static_cast<std::streamsize>(cut));
    }
    auto opened = Wal::open(path);
    size_t whole = 0;
    while (whole < ends.size() && ends[whole] <= cut) ++whole;
    ASSERT_EQ(opened.records.size(), whole) << "cut at " << cut;
    for (size_t i = 0; i < whole; ++i) ASSERT_EQ(opened.records[i], records[i]);
    // The log goes on after the cut.
    opened.wal->append("after");
    opened.wal.reset();
    auto again = Wal::open(path);
    ASSERT_EQ(again.records.size(), whole + 1) << "cut at " << cut;
    EXPECT_EQ(again.records.back(), "after");
    EXPECT_EQ(again.dropped_bytes, 0u);
  }
}

TEST(Wal, CorruptRecordEndsTheLog) {
  const auto dir = endless::testing::scratch_dir("wal-corrupt");
  const std::string path = (dir / "a.wal").string();
  const auto records = sample_records();
  uint64_t fifth_end = 0;
  {
    auto wal = Wal::create(path);
    for (size_t i = 0; i < records.size(); ++i) {
      wal->append(records[i]);
      if (i == 4) fifth_end = wal->size();
    }
  }
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(fifth_end + 20));  // inside the sixth record
    f.put('\x5a');
  }
  auto opened = Wal::open(path);
  ASSERT_EQ(opened.records.size(), 5u);
  EXPECT_GT(opened.dropped_bytes, 0u);
  EXPECT_EQ(fs::file_size(path), fifth_end);
}

TEST(Wal, ForeignFilesAreRefused) {
  const auto dir = endless::testing::scratch_dir("wal-foreign");
  const std::string path = (dir / "a.wal").string();
  {
    std::ofstream out(path);
    out << "this is not a log at all";
  }
  EXPECT_THROW(Wal::open(path), Error);
  EXPECT_THROW(Wal::open((dir / "missing.wal").string()), Error);
  // An empty file (crash before the header was written) is an empty log.
  { std::ofstream out((dir / "empty.wal").string()); }
  auto opened = Wal::open((dir / "empty.wal").string());
  EXPECT_TRUE(opened.records.empty());
}

TEST(SessionLog, RepliesTakeTheirGenerationsPlace) {
  auto rec = [](const Json& j) { return j.dump(); };
  const std::vector<std::string> records = {
      rec({{"t", "create"}, {"cache", {{"policy", "sink"}}}, {"system", "S"}, {"tokens", {1, 2}}}),
      rec({{"t", "append"}, {"text", "a"}, {"tokens", {3}}}),
      rec({{"t", "gen"}, {"g", 1}}),
      rec({{"t", "append"}, {"text", "b"}, {"tokens", {4, 5}}}),  // arrived while generating
      rec({{"t", "gen"}, {"g", 2}}),                              // cut off by a crash: no reply
      rec({{"t", "reply"}, {"g", 1}, {"text", "r"}, {"tokens", {9, 8}}, {"finish_reason", "length"}}),
      rec({{"t", "append"}, {"text", "c"}, {"tokens", {6}}}),
  };
  const SessionLog log = parse_session_log(records);
  EXPECT_EQ(log.tokens(), (std::vector<int32_t>{1, 2, 3, 9, 8, 4, 5, 6}));
  ASSERT_EQ(log.entries.size(), 5u);
  EXPECT_EQ(log.entries[2].type, "reply");
  EXPECT_EQ(log.entries[2].finish_reason, "length");
  EXPECT_EQ(log.max_gen, 2u);
  EXPECT_THROW(parse_session_log({rec({{"t", "append"}, {"tokens", {1}}})}), Error);
  EXPECT_THROW(parse_session_log({records[0], "{not json"}), Error);
  EXPECT_THROW(parse_session_log({}), Error);
}

}  // namespace
}  // namespace endless::server
