// The engine's counters, gauges and latency histograms in the Prometheus text format (/metrics).
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "loom/engine/metrics.h"

namespace loom::server {

// `http_responses` counts answered HTTP requests by status code.
std::string render_metrics(const engine::EngineStats& stats, const std::string& model_name,
                           const std::map<int, uint64_t>& http_responses);

}  // namespace loom::server
