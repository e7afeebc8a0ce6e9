// Every collective of a Communicator against a serial computation on the host: random data of
// f32, bf16, i32 and i64, uneven per-rank row counts (zeros included). Every rank of the group runs
// run_collective_suite(); all ranks derive every rank's inputs from shared seeds, so each computes
// the expected result itself. A mismatch throws loom::Error naming op, dtype, element and values.
// Shared by the Gloo tests (host tensors) and the NCCL test (device tensors).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "loom/parallel/communicator.h"
#include "loom/tensor/error.h"
#include "loom/tensor/tensor.h"

namespace loom::parallel::suite {

inline uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline uint64_t seed_of(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0) {
  return mix(mix(mix(mix(a) ^ b) ^ c) ^ d);
}

// Element i of a random tensor as f64 (exactly representable in the dtype).
inline double value_at(DType d, uint64_t seed, int64_t i) {
  const uint64_t x = mix(seed ^ static_cast<uint64_t>(i) * 0x2545f4914f6cdd1dull);
  const double u = static_cast<double>(x >> 11) / 9007199254740992.0 * 2.0 - 1.0;  // [-1, 1)
  switch (d) {
    case DType::f32: return static_cast<float>(u);
    case DType::bf16: return bf16_to_f32(f32_to_bf16(static_cast<float>(u)));
    case DType::i32:
    case DType::i64: return static_cast<double>(static_cast<int64_t>(x % 2001) - 1000);
    default: throw Error("value_at: unsupported dtype");
  }
}

inline Tensor host_tensor(DType d, int64_t rows, int64_t cols, const std::vector<double>& v) {
  Tensor t = Tensor::empty({rows, cols}, d);
  for (int64_t i = 0; i < rows * cols; ++i) {
    switch (d) {
      case DType::f32: static_cast<float*>(t.data_ptr())[i] = static_cast<float>(v[i]); break;
      case DType::bf16: static_cast<uint16_t*>(t.data_ptr())[i] = f32_to_bf16(static_cast<float>(v[i])); break;
      case DType::i32: static_cast<int32_t*>(t.data_ptr())[i] = static_cast<int32_t>(v[i]); break;
      case DType::i64: static_cast<int64_t*>(t.data_ptr())[i] = static_cast<int64_t>(v[i]); break;
      default: throw Error("host_tensor: unsupported dtype");
    }
  }
  return t;
}

inline std::vector<double> host_values(const Tensor& device_or_host) {
  Tensor t = device_or_host.device().is_cpu() ? device_or_host : device_or_host.to(Device::cpu());
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DType::f32: v[i] = static_cast<const float*>(t.data_ptr())[i]; break;
      case DType::bf16: v[i] = bf16_to_f32(static_cast<const uint16_t*>(t.data_ptr())[i]); break;
      case DType::i32: v[i] = static_cast<const int32_t*>(t.data_ptr())[i]; break;
      case DType::i64: v[i] = static_cast<double>(static_cast<const int64_t*>(t.data_ptr())[i]); break;
      default: throw Error("host_values: unsupported dtype");
    }
  }
  return v;
}

inline std::vector<double> random_values(DType d, uint64_t seed, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = value_at(d, seed, i);
  return v;
}

// Serial sum in rank order, rounded to the dtype the way the reference engine does (f32 accumulate).
inline double round_to(DType d, double x) {
  if (d == DType::f32) return static_cast<float>(x);
  if (d == DType::bf16) return bf16_to_f32(f32_to_bf16(static_cast<float>(x)));
  return x;
}

inline void expect_close(const std::vector<double>& got, const std::vector<double>& want, DType d,
                         const std::string& what, int summands) {
  LOOM_CHECK(got.size() == want.size(), what, ": ", got.size(), " elements, expected ", want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    double tol = 0;
    if (d == DType::f32) tol = 1e-6 * summands * (1 + std::fabs(want[i]));
    if (d == DType::bf16) tol = summands * (std::fabs(want[i]) / 128 + 1e-6);  // ~1 ulp per summand
    LOOM_CHECK(std::fabs(got[i] - want[i]) <= tol, what, " (", dtype_name(d), "): element ", i, " is ", got[i],
               ", expected ", want[i]);
  }
}

struct SuiteOptions {
  Device device = Device::cpu();
  int iterations = 2;
  int max_cols = 5;
};

// Runs every op; `seed` must be the same on every rank of the group.
inline void run_collective_suite(Communicator& comm, uint64_t seed, const SuiteOptions& opt = {}) {
  const int n = comm.size(), me = comm.rank();
  auto to_dev = [&](const Tensor& t) { return opt.device.is_cpu() ? t : t.to(opt.device); };
  auto small = [&](uint64_t s, int lo, int hi) { return lo + static_cast<int>(mix(s) % (hi - lo + 1)); };
  const DType dtypes[] = {DType::f32, DType::bf16, DType::i32, DType::i64};
  for (int it = 0; it < opt.iterations; ++it)
    for (DType d : dtypes) {
      const uint64_t s = seed_of(seed, it, static_cast<uint64_t>(d));
      const int64_t cols = small(s ^ 1, 1, opt.max_cols);
      const std::string tag = loom::str(comm.name(), " iteration ", it);
      const bool even = it % 2 == 0;  // alternate equal and uneven counts
      std::vector<int64_t> counts(n);
      for (int r = 0; r < n; ++r) counts[r] = even ? small(s ^ 2, 1, 4) : small(seed_of(s, 3, r), 0, 4);
      int64_t total = 0;
      std::vector<int64_t> offset(n);
      for (int r = 0; r < n; ++r) offset[r] = total, total += counts[r];

      {  // all_reduce_sum
        const int64_t rows = small(s ^ 4, 1, 6);
        Tensor t = to_dev(host_tensor(d, rows, cols, random_values(d, seed_of(s, 5, me), rows * cols)));
        comm.all_reduce_sum(t);
        std::vector<double> want(rows * cols, 0.0);
        for (int r = 0; r < n; ++r) {
          auto v = random_values(d, seed_of(s, 5, r), rows * cols);
          for (size_t i = 0; i < want.size(); ++i) want[i] += v[i];
        }
        for (auto& w : want) w = round_to(d, w);
        expect_close(host_values(t), want, d, tag + " all_reduce_sum", n);
      }
      {  // all_gather (uneven when counts differ)
        Tensor in = to_dev(host_tensor(d, counts[me], cols, random_values(d, seed_of(s, 6, me), counts[me] * cols)));
        Tensor out = Tensor::zeros({total, cols}, d, opt.device);
        comm.all_gather(in, out, even ? std::vector<int64_t>{} : counts);
        std::vector<double> want;
        for (int r = 0; r < n; ++r) {
          auto v = random_values(d, seed_of(s, 6, r), counts[r] * cols);
          want.insert(want.end(), v.begin(), v.end());
        }
        expect_close(host_values(out), want, d, tag + " all_gather", 1);
      }
      {  // reduce_scatter
        Tensor in = to_dev(host_tensor(d, total, cols, random_values(d, seed_of(s, 7, me), total * cols)));
        Tensor out = Tensor::zeros({counts[me], cols}, d, opt.device);
        comm.reduce_scatter(in, out, even ? std::vector<int64_t>{} : counts);
        std::vector<double> want(counts[me] * cols, 0.0);
        for (int r = 0; r < n; ++r) {
          auto v = random_values(d, seed_of(s, 7, r), total * cols);
          for (size_t i = 0; i < want.size(); ++i) want[i] += v[offset[me] * cols + i];
        }
        for (auto& w : want) w = round_to(d, w);
        expect_close(host_values(out), want, d, tag + " reduce_scatter", n);
      }
      {  // all_to_all: c[src][dst] rows from src to dst
        auto c = [&](int src, int dst) -> int64_t { return small(seed_of(s, 8, src, dst), 0, 3); };
        std::vector<int64_t> in_counts(n), out_counts(n);
        int64_t in_rows = 0, out_rows = 0;
        for (int p = 0; p < n; ++p) {
          in_counts[p] = c(me, p), out_counts[p] = c(p, me);
          in_rows += in_counts[p], out_rows += out_counts[p];
        }
        Tensor in = to_dev(host_tensor(d, in_rows, cols, random_values(d, seed_of(s, 9, me), in_rows * cols)));
        Tensor out = Tensor::zeros({out_rows, cols}, d, opt.device);
        comm.all_to_all(in, in_counts, out, out_counts);
        std::vector<double> want;
        for (int src = 0; src < n; ++src) {
          int64_t src_rows = 0, at = 0;
          for (int p = 0; p < n; ++p) src_rows += c(src, p);
          for (int p = 0; p < me; ++p) at += c(src, p);
          auto v = random_values(d, seed_of(s, 9, src), src_rows * cols);
          want.insert(want.end(), v.begin() + at * cols, v.begin() + (at + c(src, me)) * cols);
        }
        expect_close(host_values(out), want, d, tag + " all_to_all", 1);
      }
      {  // broadcast
        const int root = small(s ^ 10, 0, n - 1);
        const int64_t rows = small(s ^ 11, 1, 5);
        auto mine = me == root ? random_values(d, seed_of(s, 12), rows * cols) : std::vector<double>(rows * cols, 0.0);
        Tensor t = to_dev(host_tensor(d, rows, cols, mine));
        comm.broadcast(t, root);
        expect_close(host_values(t), random_values(d, seed_of(s, 12), rows * cols), d,
                     loom::str(tag, " broadcast from ", root), 1);
      }
      comm.barrier();
    }
}

}  // namespace loom::parallel::suite
