#include "loom/layers/group.h"

#include <numeric>

namespace loom::layers {

static int64_t total(const std::vector<int64_t>& counts) {
  return std::accumulate(counts.begin(), counts.end(), int64_t{0});
}

static Shape with_rows(const Tensor& like, int64_t rows) {
  Shape s = like.shape();
  s[0] = rows;
  return s;
}

void Group::all_reduce(Tensor& t) const {
  if (alone() || t.numel() == 0) return;
  comm_->all_reduce_sum(t);
}

Tensor Group::all_gather(const Tensor& x, const std::vector<int64_t>& counts) const {
  LOOM_CHECK(static_cast<int>(counts.size()) == size() && counts[rank()] == x.size(0), "all_gather: ",
             x.str(), " against ", counts.size(), " counts for a group of ", size());
  if (alone()) return x;
  Tensor out = Tensor::empty(with_rows(x, total(counts)), x.dtype(), x.device());
  comm_->all_gather(x.contiguous(), out, counts);
  return out;
}

Tensor Group::reduce_scatter(const Tensor& x, const std::vector<int64_t>& counts) const {
  LOOM_CHECK(static_cast<int>(counts.size()) == size() && total(counts) == x.size(0), "reduce_scatter: ",
             x.str(), " against counts summing to ", total(counts));
  if (alone()) return x;
  Tensor out = Tensor::empty(with_rows(x, counts[rank()]), x.dtype(), x.device());
  comm_->reduce_scatter(x.contiguous(), out, counts);
  return out;
}

Tensor Group::all_to_all(const Tensor& x, const std::vector<int64_t>& send,
                         const std::vector<int64_t>& recv) const {
  if (alone()) return x;
  Tensor out = Tensor::empty(with_rows(x, total(recv)), x.dtype(), x.device());
  comm_->all_to_all(x.contiguous(), send, out, recv);
  return out;
}

std::vector<int64_t> Group::all_gather_values(const std::vector<int64_t>& mine) const {
  if (alone()) return mine;
  const int64_t n = static_cast<int64_t>(mine.size());
  Tensor in = Tensor::empty({1, n}, DType::i64), out = Tensor::empty({size(), n}, DType::i64);
  std::copy(mine.begin(), mine.end(), in.data<int64_t>());
  cpu_->all_gather(in, out);
  return std::vector<int64_t>(out.data<int64_t>(), out.data<int64_t>() + size() * n);
}

Range split_range(int64_t n, int parts, int part) {
  const int64_t b = n * part / parts, e = n * (part + 1) / parts;
  return {b, e - b};
}

std::vector<int64_t> split_counts(int64_t n, int parts) {
  std::vector<int64_t> c(parts);
  for (int p = 0; p < parts; ++p) c[p] = split_range(n, parts, p).length;
  return c;
}

}  // namespace loom::layers
