// Containers whose storage starts on a 64-byte boundary (a cache line; one AVX-512 register).
// A 64-byte load from an address that is not a multiple of 64 spans two cache lines, and a tile
// that loads every operand that way ran at about two thirds of its speed with aligned operands
// (the F32 prefill tile: 43 against 55-70 GMAC/s, one thread).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace endless {

// madvise(MADV_HUGEPAGE) (aligned.cpp), so that this header needs no system headers.
void advise_huge_pages(void* p, size_t bytes);

template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr size_t kAlign = 64;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T) - kAlign) throw std::bad_array_new_length();
    void* p = std::aligned_alloc(kAlign, (n * sizeof(T) + kAlign - 1) / kAlign * kAlign);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
};

template <typename T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Storage of 2 MiB and more on 2 MiB boundaries, advised to the kernel as huge pages
// (MADV_HUGEPAGE; advice only, 4 KiB pages where refused), smaller storage on cache lines. For
// buffers that every decode step reads end to end, such as a session's KV cache: one TLB entry
// then covers 512 times as many bytes.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHugePage = size_t{2} << 20;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T) - kHugePage) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePage) return CacheLineAllocator<T>().allocate(n);
    void* p = std::aligned_alloc(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage);
    if (p == nullptr) throw std::bad_alloc();
    advise_huge_pages(p, (bytes + kHugePage - 1) / kHugePage * kHugePage);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
};

template <typename T>
using HugePageVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace endless
