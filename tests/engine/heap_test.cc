// engine/heap.h: what keeps `loom serve`'s RSS flat (scripts/soak.py, issue 15).
#include <gtest/gtest.h>

#include <malloc.h>

#include <cstdlib>

#include "loom/engine/heap.h"

namespace loom::engine {
namespace {

// glibc alone raises its mmap threshold to the size of each large block freed, so the next block
// of a smaller size comes from the heap (where a server's varying sizes fragment it). Bounded, a
// block of 1 MiB or more always gets its own mapping.
TEST(Heap, LargeBlocksStayInTheirOwnMappingsAfterALargerOneIsFreed) {
  bound_heap_fragmentation();
  void* big = std::malloc(8 << 20);
  ASSERT_NE(big, nullptr);
  static_cast<volatile char*>(big)[0] = 1;
  std::free(big);  // glibc alone would now take blocks below 8 MiB from the heap
  const size_t mapped_before = mallinfo2().hblkhd;
  void* block = std::malloc(2 << 20);
  ASSERT_NE(block, nullptr);
  static_cast<volatile char*>(block)[0] = 1;  // used, so the compiler keeps the allocation
  EXPECT_GE(mallinfo2().hblkhd, mapped_before + (2 << 20)) << "a 2 MiB block came from the heap";
  std::free(block);
}

TEST(Heap, ReleasingTheFreeHeapKeepsLiveBlocks) {
  auto* live = static_cast<char*>(std::malloc(4096));
  ASSERT_NE(live, nullptr);
  for (int i = 0; i < 4096; ++i) live[i] = static_cast<char>(i);
  for (int i = 0; i < 1000; ++i) std::free(std::malloc(64 << 10));
  release_free_heap();
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(live[i], static_cast<char>(i));
  std::free(live);
}

}  // namespace
}  // namespace loom::engine
