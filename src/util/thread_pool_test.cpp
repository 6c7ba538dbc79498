#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

namespace endless {
namespace {

TEST(ThreadPool, RunCallsEveryIndexOnce) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    EXPECT_EQ(pool.size(), n);
    std::vector<std::atomic<int>> calls(n);
    pool.run([&](int t) { calls[t].fetch_add(1); });
    for (int t = 0; t < n; ++t) EXPECT_EQ(calls[t].load(), 1) << "threads " << n << " index " << t;
  }
}

TEST(ThreadPool, NonPositiveSizeMeansOne) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.size(), 1);
}

TEST(ThreadPool, OneThreadRunsInlineOnTheCaller) {
  ThreadPool pool(1);
  std::thread::id seen;
  pool.run([&](int) { seen = std::this_thread::get_id(); });
  EXPECT_EQ(seen, std::this_thread::get_id());
  int64_t covered = -1;
  std::thread::id loop_thread;
  pool.parallel_for(10, [&](int64_t b, int64_t e) {
    loop_thread = std::this_thread::get_id();
    covered = e - b;
  });
  EXPECT_EQ(covered, 10);
  EXPECT_EQ(loop_thread, std::this_thread::get_id());
}

TEST(ThreadPool, CallerIsIndexZero) {
  ThreadPool pool(3);
  std::vector<std::thread::id> ids(3);
  pool.run([&](int t) { ids[t] = std::this_thread::get_id(); });
  EXPECT_EQ(ids[0], std::this_thread::get_id());
  EXPECT_NE(ids[1], ids[0]);
  EXPECT_NE(ids[2], ids[0]);
  EXPECT_NE(ids[1], ids[2]);
}

// Every element of [0, n) visited exactly once, for the three ways of splitting.
TEST(ThreadPool, LoopsCoverTheRangeExactlyOnce) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 100, 1001}) {
      std::vector<std::atomic<int>> a(n), b(n), c(n), d(n);
      pool.parallel_for(n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) a[i].fetch_add(1);
      });
      pool.parallel_for_aligned(n, 16, [&](int64_t begin, int64_t end) {
        EXPECT_EQ(begin % 16, 0) << "n " << n;
        for (int64_t i = begin; i < end; ++i) b[i].fetch_add(1);
      });
      pool.parallel_for_dynamic(n, 5, [&](int64_t begin, int64_t end) {
        if (threads > 1) {
          EXPECT_LE(end - begin, 5);  // one thread: one call, no counter
        }
        for (int64_t i = begin; i < end; ++i) c[i].fetch_add(1);
      });
      pool.parallel_for_balanced(n, 16, 40, [&](int64_t begin, int64_t end) {
        EXPECT_EQ(begin % 16, 0) << "n " << n;  // grain 40 is rounded down to 32
        if (threads > 1) {
          EXPECT_LE(end - begin, 32) << "n " << n;
        }
        for (int64_t i = begin; i < end; ++i) d[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(a[i].load(), 1) << "parallel_for threads " << threads << " n " << n << " i " << i;
        ASSERT_EQ(b[i].load(), 1) << "aligned threads " << threads << " n " << n << " i " << i;
        ASSERT_EQ(c[i].load(), 1) << "dynamic threads " << threads << " n " << n << " i " << i;
        ASSERT_EQ(d[i].load(), 1) << "balanced threads " << threads << " n " << n << " i " << i;
      }
    }
  }
}

TEST(ThreadPool, StaticSplitIsBalanced) {
  ThreadPool pool(2);
  std::vector<int64_t> sizes(2, -1);
  pool.run([&](int) {});
  pool.parallel_for(101, [&](int64_t begin, int64_t end) { sizes[begin == 0 ? 0 : 1] = end - begin; });
  EXPECT_EQ(sizes[0] + sizes[1], 101);
  EXPECT_LE(std::abs(sizes[0] - sizes[1]), 1);
}

// A thread that is held up has its chunks taken by the others: the worker, on its first chunk,
// waits until every other row is done, which happens only if the caller takes over the rest of
// the worker's part.
TEST(ThreadPool, BalancedLoopTakesOverADelayedThreadsPart) {
  ThreadPool pool(2);
  constexpr int64_t n = 64 * 16;
  const auto caller = std::this_thread::get_id();
  std::atomic<int64_t> done{0};
  std::atomic<int64_t> by_caller{0};
  std::atomic<bool> worker_waited{false};
  pool.parallel_for_balanced(n, 16, 16, [&](int64_t begin, int64_t end) {
    if (std::this_thread::get_id() != caller && !worker_waited.exchange(true)) {
      for (int i = 0; i < 5000 && done.load() < n - (end - begin); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (std::this_thread::get_id() == caller) by_caller += end - begin;
    done += end - begin;
  });
  EXPECT_EQ(done.load(), n);
  // The worker may not have started before the caller took everything; if it did, it held one
  // chunk and the caller did all the rest, its own half and the worker's other chunks.
  if (worker_waited.load()) EXPECT_EQ(by_caller.load(), n - 16);
  else EXPECT_EQ(by_caller.load(), n);
}

// Many jobs back to back (the decode pattern): each sees the writes of the previous one and the
// caller sees each job's writes when run returns.
TEST(ThreadPool, BackToBackJobsSeeEachOthersWrites) {
  ThreadPool pool(2);
  std::vector<int64_t> data(1024, 0);
  constexpr int kJobs = 20000;
  for (int j = 0; j < kJobs; ++j) {
    pool.parallel_for(static_cast<int64_t>(data.size()), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) data[i] += i + 1;
    });
    // Serial work between jobs, reading what both threads wrote.
    ASSERT_EQ(data[0], j + 1);
    ASSERT_EQ(data[1023], int64_t{1024} * (j + 1));
  }
  int64_t sum = 0;
  for (int64_t v : data) sum += v;
  EXPECT_EQ(sum, int64_t{kJobs} * 1024 * 1025 / 2);
}

// Workers that went to sleep (idle longer than they spin) wake for the next job.
TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(3);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    std::vector<std::atomic<int>> calls(3);
    pool.run([&](int t) { calls[t].fetch_add(1); });
    for (int t = 0; t < 3; ++t) EXPECT_EQ(calls[t].load(), 1) << "round " << round;
  }
}

// A job dispatched before the workers got to run at all must still reach them (a missed first job
// would leave run() waiting forever).
TEST(ThreadPool, FirstJobRightAfterConstruction) {
  for (int i = 0; i < 200; ++i) {
    ThreadPool pool(2 + i % 3);
    std::atomic<int> calls{0};
    pool.run([&](int) { calls.fetch_add(1); });
    ASSERT_EQ(calls.load(), pool.size()) << "pool " << i;
  }
}

TEST(ThreadPool, CallerExceptionPropagatesAfterWorkersFinish) {
  ThreadPool pool(2);
  std::atomic<int> worker_done{0};
  EXPECT_THROW(pool.run([&](int t) {
    if (t == 0) throw std::runtime_error("caller fails");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    worker_done.store(1);
  }),
               std::runtime_error);
  EXPECT_EQ(worker_done.load(), 1);
  // The pool is still usable.
  std::atomic<int> calls{0};
  pool.run([&](int) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 2);
}

}  // namespace
}  // namespace endless
