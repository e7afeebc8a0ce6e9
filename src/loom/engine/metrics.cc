#include "loom/engine/metrics.h"

namespace loom::engine {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), cumulative_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  for (size_t i = 0; i < bounds_.size(); ++i)
    if (value <= bounds_[i]) ++cumulative_[i];
  ++cumulative_.back();
  sum_ += value;
  ++count_;
}

}  // namespace loom::engine
