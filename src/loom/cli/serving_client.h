// One request of `loom bench serving` against an OpenAI-compatible server (loom, SGLang, vLLM):
// sends it, reads the SSE stream as it arrives and times the chunks that carry text.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "loom/cli/serving_dataset.h"
#include "loom/cli/serving_stats.h"

namespace loom::cli {

struct ServingTarget {
  std::string origin;  // "http://127.0.0.1:30000"
  std::string prefix;  // path before /v1 ("" usually)
  std::string model;
  std::string api_key;
  bool chat = false;   // /v1/chat/completions with the prompt as one user message
  bool stream = true;
  bool ignore_eos = true;  // every request generates its full output length
  int timeout_s = 3600;
  nlohmann::json extra_body = nlohmann::json::object();  // merged into every request (--extra-request-body)
};

// Splits "http://host:port[/prefix]" into origin and prefix; InvalidArgument naming --base-url.
ServingTarget parse_base_url(const std::string& url);

// The first model the server lists (GET /v1/models); a clear error when the server is not there.
std::string first_served_model(const ServingTarget& t);

RequestResult send_request(const ServingTarget& t, const BenchPrompt& p);

}  // namespace loom::cli
