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

// Memory on huge pages where the kernel grants them: 2 MiB-aligned, advised MADV_HUGEPAGE (advice
// only; 4 KiB pages where refused). For buffers that every decode step reads end to end (a
// session's KV cache, the packed weights): one TLB entry then covers 512 times as many bytes.
constexpr size_t kHugePageBytes = size_t{2} << 20;
constexpr size_t round_to_huge_pages(size_t bytes) { return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes; }
// bytes: a multiple of kHugePageBytes. Null where the allocation fails; release with std::free.
void* allocate_huge_pages(size_t bytes);

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

// Storage of 2 MiB and more on huge pages (allocate_huge_pages), smaller storage on cache lines.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T) - kHugePageBytes) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return CacheLineAllocator<T>().allocate(n);
    void* p = allocate_huge_pages(round_to_huge_pages(bytes));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
};

template <typename T>
using HugePageVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace endless
