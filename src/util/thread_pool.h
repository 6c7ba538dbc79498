// A persistent pool of worker threads for data-parallel loops. The calling thread takes part, so
// `-t 1` runs everything inline with no synchronization at all.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace endless {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads = 1);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index) once on each of the size() threads and waits for all of them.
  void run(const std::function<void(int)>& fn);

  // Splits [0, n) into size() contiguous parts and runs fn(begin, end) on each.
  template <typename F>
  void parallel_for(int64_t n, F&& fn) {
    if (n_threads_ == 1 || n <= 1) {
      fn(int64_t{0}, n);
      return;
    }
    run([&](int t) {
      const int64_t begin = n * t / n_threads_;
      const int64_t end = n * (t + 1) / n_threads_;
      if (begin < end) fn(begin, end);
    });
  }

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  std::atomic<int> pending_{0};
  bool stop_ = false;
};

}  // namespace endless
