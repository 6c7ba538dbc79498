#include "util/aligned.h"

#include <sys/mman.h>

namespace endless {

void advise_huge_pages(void* p, size_t bytes) {
  ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: the kernel may keep 4 KiB pages
}

}  // namespace endless
