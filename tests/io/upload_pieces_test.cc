// The pieces a GPU load is staged in (io/upload_pieces.h): every element of the destination
// exactly once, in order, each piece within the buffer and one contiguous stretch.
#include "loom/io/upload_pieces.h"

#include <gtest/gtest.h>

namespace loom::io {
namespace {

void check_cover(int64_t rows, int64_t run, size_t elem_bytes, size_t max_bytes) {
  SCOPED_TRACE(::testing::Message() << rows << " x " << run << " of " << elem_bytes << " B into " << max_bytes << " B");
  const auto pieces = upload_pieces(rows, run, elem_bytes, max_bytes);
  int64_t next = 0;  // the destination element the next piece must start at
  for (const UploadPiece& p : pieces) {
    ASSERT_GE(p.rows, 1);
    ASSERT_GE(p.elems, 1);
    if (p.rows > 1) ASSERT_EQ(p.elems, run) << "several rows only whole";
    ASSERT_LE(static_cast<size_t>(p.rows * p.elems) * elem_bytes, max_bytes);
    ASSERT_LE(p.elem + p.elems, run);
    ASSERT_EQ(p.row * run + p.elem, next) << "pieces in order, no gap, no overlap";
    next += p.rows * p.elems;
  }
  EXPECT_EQ(next, rows * run);
}

TEST(UploadPieces, CoverEveryElementOnceWithinTheBuffer) {
  check_cover(1, 1, 2, 2);
  check_cover(7, 5, 2, 64);                    // 6 rows a piece
  check_cover(7, 5, 2, 10);                    // a row a piece exactly
  check_cover(3, 100, 4, 64);                  // rows split in 16-element parts
  check_cover(2, 101, 2, 64);                  // a ragged last part
  check_cover(1, 402653184, 2, 64 << 20);      // one 768 MB stacked-expert run in 64 MB parts
  check_cover(2048, 768, 2, 64 << 20);         // an expert's down rows, all in one piece
  check_cover(151936, 2048, 2, 64 << 20);      // lm_head
  EXPECT_TRUE(upload_pieces(0, 5, 2, 64).empty());
  EXPECT_TRUE(upload_pieces(5, 0, 2, 64).empty());
}

TEST(UploadPieces, BufferSmallerThanAnElementIsRejected) {
  EXPECT_THROW(upload_pieces(1, 1, 4, 2), Error);
}

}  // namespace
}  // namespace loom::io
