#include "util/thread_pool.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <exception>

namespace endless {
namespace {

// How many pause-loop iterations a worker spins for the next job before it sleeps: about a
// millisecond, longer than the gaps between the parallel regions of a forward pass and between
// its tokens, far shorter than anything a person notices as a busy CPU.
constexpr int kSpinsBeforeSleep = 1 << 15;

inline void cpu_relax() { _mm_pause(); }

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

}  // namespace

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word must be 32 bits");

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads), parts_(new Part[n_threads < 1 ? 1 : n_threads]) {
  workers_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  if (workers_.empty()) return;
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(&generation_);
  for (auto& w : workers_) w.join();
}

void ThreadPool::dispatch(Trampoline call, void* ctx) {
  job_.call = call;
  job_.ctx = ctx;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  // seq_cst: pairs with the sleepers_ increment in worker(), so either the worker sees the new
  // generation before it sleeps or this load sees it about to sleep and wakes it.
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(&generation_);

  std::exception_ptr error;
  try {
    call(ctx, 0);
  } catch (...) {
    error = std::current_exception();  // the workers still use ctx: wait for them first
  }
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinsBeforeSleep) cpu_relax();
    else std::this_thread::yield();  // a worker was descheduled: let it run
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker(int index) {
  // Generation 0 is the pool's state at construction: a job dispatched before this thread got
  // to run has already moved it on, and must not be missed.
  uint32_t seen = 0;
  for (;;) {
    uint32_t g;
    for (int spins = 0;; ++spins) {
      g = generation_.load(std::memory_order_acquire);
      if (g != seen) break;
      if (spins < kSpinsBeforeSleep) {
        cpu_relax();
        continue;
      }
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if (generation_.load(std::memory_order_seq_cst) == seen) futex_wait(&generation_, seen);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      spins = 0;
    }
    seen = g;
    if (stop_.load(std::memory_order_relaxed)) return;
    job_.call(job_.ctx, index);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace endless
