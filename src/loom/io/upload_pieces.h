// How a (rows x run)-element copy splits into pieces that each fit a staging buffer (tensor/
// pinned_upload.h), every piece one contiguous stretch of the destination: whole rows when a row
// fits, else parts of one row. Pure arithmetic, so the checkpoint loader's GPU path is tested on CPU.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "loom/tensor/error.h"

namespace loom::io {

struct UploadPiece {
  int64_t row = 0, elem = 0;   // first row, first element within it
  int64_t rows = 0, elems = 0;  // rows > 1 only with elems == run (whole rows)
};

inline std::vector<UploadPiece> upload_pieces(int64_t rows, int64_t run, size_t elem_bytes, size_t max_bytes) {
  LOOM_CHECK(rows >= 0 && run >= 0 && elem_bytes > 0 && max_bytes >= elem_bytes, "upload_pieces: ", rows, " x ", run,
             " elements of ", elem_bytes, " bytes into pieces of ", max_bytes);
  std::vector<UploadPiece> pieces;
  if (rows == 0 || run == 0) return pieces;
  const int64_t fit = static_cast<int64_t>(max_bytes / elem_bytes);  // elements a piece may hold
  if (run <= fit) {
    const int64_t per = fit / run;
    for (int64_t r = 0; r < rows; r += per) pieces.push_back({r, 0, std::min(per, rows - r), run});
  } else {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < run; e += fit) pieces.push_back({r, e, 1, std::min(fit, run - e)});
  }
  return pieces;
}

}  // namespace loom::io
