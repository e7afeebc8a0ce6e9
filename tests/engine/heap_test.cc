// engine/heap.h: what keeps `loom serve`'s RSS flat (scripts/soak.py, issue 15).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>

#include "loom/engine/heap.h"

namespace loom::engine {
namespace {

// Whether glibc gave `p` a mapping of its own: bit 1 (IS_MMAPPED) of the chunk's size field, the
// word before the block. (Not the process-wide mallinfo2().hblkhd: other threads' blocks, e.g.
// those of an earlier test's engine in the same process, come and go in that count.)
bool has_own_mapping(const void* p) { return (static_cast<const size_t*>(p)[-1] & 2) != 0; }

// glibc alone raises its mmap threshold to the size of each large block freed, so the next block
// of a smaller size comes from the heap (where a server's varying sizes fragment it). Bounded, a
// block of 1 MiB or more always gets its own mapping.
TEST(Heap, LargeBlocksStayInTheirOwnMappingsAfterALargerOneIsFreed) {
  bound_heap_fragmentation();
  void* big = std::malloc(8 << 20);
  ASSERT_NE(big, nullptr);
  static_cast<volatile char*>(big)[0] = 1;
  // The threshold decides only when the heap has no free stretch that fits: with one (left by
  // earlier tests in this process: --gtest_repeat), blocks of any size come from it. CTest runs
  // each test in a fresh process, where an 8 MiB block is always mapped.
  if (!has_own_mapping(big)) {
    std::free(big);
    GTEST_SKIP() << "this process's heap already has a free stretch of 8 MiB; run the test alone";
  }
  std::free(big);  // glibc alone would now take blocks below 8 MiB from the heap
  void* block = std::malloc(2 << 20);
  ASSERT_NE(block, nullptr);
  static_cast<volatile char*>(block)[0] = 1;  // used, so the compiler keeps the allocation
  EXPECT_TRUE(has_own_mapping(block)) << "a 2 MiB block came from the heap";
  void* small = std::malloc(4096);
  ASSERT_NE(small, nullptr);
  EXPECT_FALSE(has_own_mapping(small)) << "the check tells the two apart";
  std::free(small);
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
