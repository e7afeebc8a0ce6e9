#include "loom/cli/serving_stats.h"

#include <algorithm>
#include <cstdio>

namespace loom::cli {

Distribution distribution_of(std::vector<double> v) {
  Distribution d;
  if (v.empty()) return d;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  d.mean = sum / static_cast<double>(v.size());
  const auto at = [&](double p) {
    const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
  };
  d.p50 = at(50), d.p90 = at(90), d.p99 = at(99);
  return d;
}

ServingSummary summarize(const std::vector<RequestResult>& results, double duration_s) {
  ServingSummary s;
  s.duration_s = duration_s;
  std::vector<double> ttft, itl, tpot, e2e;
  for (const RequestResult& r : results) {
    if (!r.ok) {
      ++s.failed;
      if (s.first_error.empty()) s.first_error = r.error;
      continue;
    }
    ++s.completed;
    s.input_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
    for (double g : r.itl_s) itl.push_back(g * 1e3);
    if (r.output_tokens > 1) tpot.push_back((r.e2e_s - r.ttft_s) * 1e3 / static_cast<double>(r.output_tokens - 1));
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.input_throughput = static_cast<double>(s.input_tokens) / duration_s;
    s.output_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_throughput = s.input_throughput + s.output_throughput;
  }
  s.ttft_ms = distribution_of(ttft);
  s.itl_ms = distribution_of(itl);
  s.tpot_ms = distribution_of(tpot);
  s.e2e_ms = distribution_of(e2e);
  return s;
}

namespace {
nlohmann::json dist_json(const Distribution& d) {
  return {{"mean", d.mean}, {"p50", d.p50}, {"p90", d.p90}, {"p99", d.p99}};
}
}  // namespace

nlohmann::json to_json(const ServingSummary& s) {
  return {{"completed", s.completed},
          {"failed", s.failed},
          {"duration_s", s.duration_s},
          {"total_input_tokens", s.input_tokens},
          {"total_output_tokens", s.output_tokens},
          {"request_throughput", s.request_throughput},
          {"input_throughput", s.input_throughput},
          {"output_throughput", s.output_throughput},
          {"total_throughput", s.total_throughput},
          {"ttft_ms", dist_json(s.ttft_ms)},
          {"itl_ms", dist_json(s.itl_ms)},
          {"tpot_ms", dist_json(s.tpot_ms)},
          {"e2e_latency_ms", dist_json(s.e2e_ms)},
          {"first_error", s.first_error}};
}

std::string format_summary(const ServingSummary& s, const std::string& title) {
  std::string out;
  char line[160];
  const auto row = [&](const char* name, double v, const char* fmt = "%-40s %14.2f\n") {
    std::snprintf(line, sizeof line, fmt, name, v);
    out += line;
  };
  std::snprintf(line, sizeof line, "============ %s ============\n", title.c_str());
  out += line;
  row("Successful requests:", static_cast<double>(s.completed), "%-40s %14.0f\n");
  row("Failed requests:", static_cast<double>(s.failed), "%-40s %14.0f\n");
  row("Benchmark duration (s):", s.duration_s);
  row("Total input tokens:", static_cast<double>(s.input_tokens), "%-40s %14.0f\n");
  row("Total generated tokens:", static_cast<double>(s.output_tokens), "%-40s %14.0f\n");
  row("Request throughput (req/s):", s.request_throughput);
  row("Input token throughput (tok/s):", s.input_throughput);
  row("Output token throughput (tok/s):", s.output_throughput);
  row("Total token throughput (tok/s):", s.total_throughput);
  const auto dist = [&](const char* what, const Distribution& d) {
    std::snprintf(line, sizeof line, "%-40s %14.2f\n", (std::string("Mean ") + what + " (ms):").c_str(), d.mean);
    out += line;
    for (auto [name, v] : {std::pair{"Median", d.p50}, std::pair{"P90", d.p90}, std::pair{"P99", d.p99}}) {
      std::snprintf(line, sizeof line, "%-40s %14.2f\n", (std::string(name) + " " + what + " (ms):").c_str(), v);
      out += line;
    }
  };
  dist("E2E Latency", s.e2e_ms);
  dist("TTFT", s.ttft_ms);
  dist("TPOT", s.tpot_ms);
  dist("ITL", s.itl_ms);
  if (!s.first_error.empty()) out += "First error: " + s.first_error + "\n";
  return out;
}

}  // namespace loom::cli
