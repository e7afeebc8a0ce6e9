// Counters and latency histograms the engine keeps for /metrics, and the snapshot it hands out.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom::engine {

// Prometheus-style histogram: cumulative counts per upper bound (seconds), plus sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& cumulative() const { return cumulative_; }  // per bound, then +Inf
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> cumulative_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct EngineStats {
  // Gauges.
  int64_t waiting = 0;           // queued requests (including retracted ones)
  int64_t running = 0;           // requests in the running batch
  int64_t kv_pages_total = 0;
  int64_t kv_pages_free = 0;
  int64_t kv_pages_cached = 0;   // held by the prefix cache
  int64_t kv_pages_locked = 0;   // cached pages in use by running requests
  int64_t page_size = 0;
  // Counters.
  uint64_t requests_submitted = 0;
  uint64_t requests_finished_stop = 0, requests_finished_length = 0, requests_finished_abort = 0,
           requests_finished_error = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generation_tokens = 0;
  uint64_t prefix_cache_hit_tokens = 0;
  uint64_t retractions = 0;
  uint64_t steps = 0;
  uint64_t overlapped_steps = 0;  // steps queued before the previous step's tokens were on the host
  uint64_t heap_releases = 0;  // the idle engine returned the heap's free pages (engine/heap.h)
  Histogram ttft{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  Histogram inter_token{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
};

}  // namespace loom::engine
