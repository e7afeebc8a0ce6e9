// Splits [0, total) into contiguous chunks, one per thread: as many threads as `total` has
// `min_per_thread` elements, at least 2 available, at most 16. `work(lo, hi)` must not throw.
#pragma once
#include <algorithm>
#include <thread>
#include <vector>

namespace loom::io {

template <typename F>
void parallel_chunks(int64_t total, int64_t min_per_thread, F&& work) {
  const int64_t hw = std::max(2u, std::thread::hardware_concurrency());
  const int64_t threads = std::clamp<int64_t>(total / std::max<int64_t>(min_per_thread, 1), 1, std::min<int64_t>(hw, 16));
  if (threads <= 1) {
    if (total > 0) work(int64_t{0}, total);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int64_t t = 0; t < threads; ++t) pool.emplace_back(work, total * t / threads, total * (t + 1) / threads);
  for (auto& th : pool) th.join();
}

}  // namespace loom::io
