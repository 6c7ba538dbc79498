// A persistent pool of worker threads for data-parallel loops. The calling thread takes part, so
// `-t 1` runs everything inline with no synchronization at all.
//
// Hand-off is built for the many tiny parallel regions of a decode step (a few per layer per
// token): the caller publishes the job and bumps a generation counter; workers spin on that
// counter (with a pause instruction) for a while before they sleep on a futex, so a job that
// follows the previous one closely costs two cache-line transfers, no system call. The caller
// wakes sleepers only when there are any. Completion is a countdown the caller spins on.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace endless {

class ThreadPool {
 public:
  // n_threads counts the caller: n_threads - 1 workers are started.
  explicit ThreadPool(int n_threads = 1);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index) once on each of the size() threads (the caller is index 0) and waits
  // for all of them. Jobs must not call run() on the same pool (no nesting). Exceptions must not
  // escape fn on a worker (they terminate the process); on the caller they propagate after the
  // workers finished.
  template <typename F>
  void run(F&& fn) {
    if (n_threads_ == 1) {
      fn(0);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    dispatch([](void* ctx, int t) { (*static_cast<Fn*>(ctx))(t); },
             const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Splits [0, n) into size() contiguous parts, as equal as possible, and runs fn(begin, end) on
  // each non-empty one.
  template <typename F>
  void parallel_for(int64_t n, F&& fn) {
    if (n_threads_ == 1 || n <= 1) {
      if (n > 0) fn(int64_t{0}, n);
      return;
    }
    run([&](int t) {
      const int64_t begin = n * t / n_threads_;
      const int64_t end = n * (t + 1) / n_threads_;
      if (begin < end) fn(begin, end);
    });
  }

  // The same with part boundaries rounded to multiples of `align` (the last part takes the rest),
  // e.g. so that each thread's rows of a matrix start on a cache line.
  template <typename F>
  void parallel_for_aligned(int64_t n, int64_t align, F&& fn) {
    if (n_threads_ == 1 || n <= align) {
      if (n > 0) fn(int64_t{0}, n);
      return;
    }
    const int64_t units = (n + align - 1) / align;
    run([&](int t) {
      const int64_t begin = std::min(n, units * t / n_threads_ * align);
      const int64_t end = t + 1 == n_threads_ ? n : std::min(n, units * (t + 1) / n_threads_ * align);
      if (begin < end) fn(begin, end);
    });
  }

  // Splits [0, n) into chunks of `chunk` handed out on demand (an atomic counter), for loops
  // whose iterations differ in cost or whose threads may be delayed: fn(begin, end) per chunk.
  template <typename F>
  void parallel_for_dynamic(int64_t n, int64_t chunk, F&& fn) {
    if (chunk < 1) chunk = 1;
    if (n_threads_ == 1 || n <= chunk) {
      if (n > 0) fn(int64_t{0}, n);
      return;
    }
    std::atomic<int64_t> next{0};
    run([&](int) {
      for (;;) {
        const int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
        if (begin >= n) break;
        fn(begin, std::min(n, begin + chunk));
      }
    });
  }

  // Splits [0, n) into size() contiguous parts as parallel_for_aligned does, each handed out in
  // chunks of `grain` (a multiple of `align`) from its front; a thread that has finished its own
  // part then takes chunks from the others'. On a machine where a thread can be delayed (another
  // process, an interrupt, a hypervisor), the others finish its work instead of waiting for it,
  // while each thread still walks a contiguous range, as the memory prefetchers like.
  // fn(begin, end) per chunk.
  template <typename F>
  void parallel_for_balanced(int64_t n, int64_t align, int64_t grain, F&& fn) {
    if (n_threads_ == 1 || n <= align) {
      if (n > 0) fn(int64_t{0}, n);
      return;
    }
    grain = std::max<int64_t>(align, grain / align * align);
    const int64_t units = (n + align - 1) / align;
    for (int t = 0; t < n_threads_; ++t) {
      parts_[t].next.store(std::min(n, units * t / n_threads_ * align), std::memory_order_relaxed);
      parts_[t].end = t + 1 == n_threads_ ? n : std::min(n, units * (t + 1) / n_threads_ * align);
    }
    run([&](int t) {
      for (int k = 0; k < n_threads_; ++k) {
        Part& p = parts_[(t + k) % n_threads_];
        for (;;) {
          const int64_t begin = p.next.fetch_add(grain, std::memory_order_relaxed);
          if (begin >= p.end) break;
          fn(begin, std::min(p.end, begin + grain));
        }
      }
    });
  }

 private:
  struct alignas(64) Part {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  using Trampoline = void (*)(void* ctx, int thread);
  void dispatch(Trampoline call, void* ctx);
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::unique_ptr<Part[]> parts_;  // parallel_for_balanced's ranges, one per thread

  // Each on its own cache line: the caller writes job_/generation_, workers write pending_.
  struct alignas(64) Job {
    Trampoline call = nullptr;
    void* ctx = nullptr;
  } job_;
  alignas(64) std::atomic<uint32_t> generation_{0};  // futex word: bumped once per job
  alignas(64) std::atomic<int> pending_{0};           // workers still running the current job
  alignas(64) std::atomic<int> sleepers_{0};          // workers blocked (or about to block) on it
  std::atomic<bool> stop_{false};
};

}  // namespace endless
