#include "util/aligned.h"

#include <sys/mman.h>

namespace endless {

void* allocate_huge_pages(size_t bytes) {
  void* p = std::aligned_alloc(kHugePageBytes, bytes);
  if (p != nullptr) ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: the kernel may keep 4 KiB pages
  return p;
}

}  // namespace endless
