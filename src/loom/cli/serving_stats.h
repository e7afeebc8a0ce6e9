// What `loom bench serving` measures per request and how it sums them up: throughput, and the
// mean / p50 / p90 / p99 of time to first token, inter-token latency, time per output token and
// end-to-end latency (SGLang's bench_serving definitions).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::cli {

struct RequestResult {
  bool ok = false;
  std::string error;          // when !ok: the status and the server's message
  int64_t prompt_tokens = 0;  // as the dataset counted them (the server's usage when it sent one)
  int64_t output_tokens = 0;  // the server's usage.completion_tokens, else one per streamed chunk
  double ttft_s = 0;          // request sent -> first chunk with text
  double e2e_s = 0;           // request sent -> end of the response
  std::vector<double> itl_s;  // gaps between consecutive chunks with text
};

struct Distribution {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};
// Linear interpolation between closest ranks (numpy's default); zeros for no values.
Distribution distribution_of(std::vector<double> values);

struct ServingSummary {
  int64_t completed = 0, failed = 0;
  double duration_s = 0;
  int64_t input_tokens = 0, output_tokens = 0;
  double request_throughput = 0, input_throughput = 0, output_throughput = 0, total_throughput = 0;
  Distribution ttft_ms, itl_ms, tpot_ms, e2e_ms;
  std::string first_error;
};

ServingSummary summarize(const std::vector<RequestResult>& results, double duration_s);
nlohmann::json to_json(const ServingSummary& s);
// The human-readable table (stdout).
std::string format_summary(const ServingSummary& s, const std::string& title);

}  // namespace loom::cli
