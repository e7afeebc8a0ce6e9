#include "loom/parallel/host_collective_math.h"

#include "loom/tensor/error.h"

namespace loom::parallel {

void sum_in_order(const std::vector<const void*>& parts, int64_t n, void* dst, DType d) {
  const size_t k = parts.size();
  switch (d) {
    case DType::f32: {
      auto* o = static_cast<float*>(dst);
      for (int64_t e = 0; e < n; ++e) {
        float acc = 0;
        for (size_t p = 0; p < k; ++p) acc += static_cast<const float*>(parts[p])[e];
        o[e] = acc;
      }
      return;
    }
    case DType::i32:
    case DType::i64: {
      for (int64_t e = 0; e < n; ++e) {
        int64_t acc = 0;
        for (size_t p = 0; p < k; ++p)
          acc += d == DType::i32 ? static_cast<const int32_t*>(parts[p])[e] : static_cast<const int64_t*>(parts[p])[e];
        if (d == DType::i32) static_cast<int32_t*>(dst)[e] = static_cast<int32_t>(acc);
        else static_cast<int64_t*>(dst)[e] = acc;
      }
      return;
    }
    case DType::bf16:
    case DType::f16: {
      auto* o = static_cast<uint16_t*>(dst);
      const bool bf = d == DType::bf16;
      for (int64_t e = 0; e < n; ++e) {
        float acc = 0;
        for (size_t p = 0; p < k; ++p) {
          const uint16_t v = static_cast<const uint16_t*>(parts[p])[e];
          acc += bf ? bf16_to_f32(v) : f16_to_f32(v);
        }
        o[e] = bf ? f32_to_bf16(acc) : f32_to_f16(acc);
      }
      return;
    }
    default: throw Error(str("sum of dtype ", dtype_name(d), " is not supported"));
  }
}

std::string counts_disagreement(const char* op, const std::vector<std::vector<int64_t>>& counts,
                                const std::vector<std::vector<int64_t>>* out_counts) {
  const size_t n = counts.size();
  for (size_t r = 0; r < n; ++r)
    for (size_t p = 0; p < n; ++p) {
      if (out_counts) {
        const int64_t sent = counts[r][p], expected = (*out_counts)[p][r];
        if (sent != expected)
          return str(op, ": group rank ", r, " sends ", sent, " rows to group rank ", p, ", which expects ", expected,
                     " (its out_counts[", r, "])");
      } else if (counts[r][p] != counts[0][p]) {
        return str(op, ": ranks disagree on the counts: group rank ", r, " has counts[", p, "] = ", counts[r][p],
                   ", group rank 0 has ", counts[0][p]);
      }
    }
  return "";
}

}  // namespace loom::parallel
