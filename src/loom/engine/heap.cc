#include "loom/engine/heap.h"

#include <cstdlib>  // defines __GLIBC__ (through <features.h>) before it is tested

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace loom::engine {

// Other C libraries' allocators are left as they are.
void bound_heap_fragmentation() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
}

void release_free_heap() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

}  // namespace loom::engine
