// What the host backends (Gloo, host-copy) compute the same way: sums in group order, and the
// verdict on per-rank counts that every member reaches alike from all members' counts.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "loom/tensor/dtype.h"

namespace loom::parallel {

// dst[e] = parts[0][e] + parts[1][e] + ... in that order, for e < n: the serial sum, so every
// member gets the same bits. 16-bit floats accumulate in f32 and round once; f32, i32, i64 too.
void sum_in_order(const std::vector<const void*>& parts, int64_t n, void* dst, DType d);

// "" when the counts agree, else the error every member reports. counts[r] is member r's counts;
// with out_counts (all_to_all), member r sends counts[r][p] rows to p, which expects
// out_counts[p][r]; without, every member must pass member 0's counts.
std::string counts_disagreement(const char* op, const std::vector<std::vector<int64_t>>& counts,
                                const std::vector<std::vector<int64_t>>* out_counts);

}  // namespace loom::parallel
