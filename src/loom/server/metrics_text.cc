#include "loom/server/metrics_text.h"

#include <sstream>

namespace loom::server {
namespace {

class Writer {
 public:
  explicit Writer(std::string model) : labels_("model_name=\"" + std::move(model) + "\"") {}

  void header(const std::string& name, const char* type, const char* help) {
    os_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  template <typename T>
  void sample(const std::string& name, T value, const std::string& extra = "") {
    os_ << name << '{' << labels_ << (extra.empty() ? "" : ",") << extra << "} " << value << '\n';
  }
  template <typename T>
  void metric(const std::string& name, const char* type, const char* help, T value) {
    header(name, type, help);
    sample(name, value);
  }
  void histogram(const std::string& name, const char* help, const engine::Histogram& h) {
    header(name, "histogram", help);
    for (size_t i = 0; i < h.bounds().size(); ++i) {
      std::ostringstream le;
      le << h.bounds()[i];
      sample(name + "_bucket", h.cumulative()[i], "le=\"" + le.str() + "\"");
    }
    sample(name + "_bucket", h.cumulative().back(), "le=\"+Inf\"");
    sample(name + "_sum", h.sum());
    sample(name + "_count", h.count());
  }
  std::string str() const { return os_.str(); }
  std::ostream& raw() { return os_; }

 private:
  std::string labels_;
  std::ostringstream os_;
};

}  // namespace

std::string render_metrics(const engine::EngineStats& s, const std::string& model_name,
                           const std::map<int, uint64_t>& http_responses) {
  Writer w(model_name);
  w.metric("loom_num_requests_waiting", "gauge", "Requests queued (including retracted ones).", s.waiting);
  w.metric("loom_num_requests_running", "gauge", "Requests in the running batch.", s.running);
  w.metric("loom_kv_pages_total", "gauge", "Usable KV pages in the pool.", s.kv_pages_total);
  w.metric("loom_kv_pages_free", "gauge", "KV pages free in the pool.", s.kv_pages_free);
  w.metric("loom_kv_pages_cached", "gauge", "KV pages held by the prefix cache.", s.kv_pages_cached);
  // At idle none is locked and free + cached = total; anything else is a leak (the soak reads this).
  w.metric("loom_kv_pages_locked", "gauge", "Prefix-cache pages in use by running requests.", s.kv_pages_locked);
  w.metric("loom_kv_page_size", "gauge", "Tokens per KV page.", s.page_size);
  const double used = s.kv_pages_total > 0
                          ? static_cast<double>(s.kv_pages_total - s.kv_pages_free) / static_cast<double>(s.kv_pages_total)
                          : 0.0;
  w.metric("loom_kv_usage_ratio", "gauge", "Fraction of KV pages not free (in use or cached).", used);

  w.metric("loom_requests_submitted_total", "counter", "Requests accepted by the engine.", s.requests_submitted);
  w.header("loom_requests_finished_total", "counter", "Finished requests by finish reason.");
  w.sample("loom_requests_finished_total", s.requests_finished_stop, "finish_reason=\"stop\"");
  w.sample("loom_requests_finished_total", s.requests_finished_length, "finish_reason=\"length\"");
  w.sample("loom_requests_finished_total", s.requests_finished_abort, "finish_reason=\"abort\"");
  w.sample("loom_requests_finished_total", s.requests_finished_error, "finish_reason=\"error\"");
  w.metric("loom_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", s.prompt_tokens);
  w.metric("loom_generation_tokens_total", "counter", "Generated tokens.", s.generation_tokens);
  w.metric("loom_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache.",
           s.prefix_cache_hit_tokens);
  w.metric("loom_retractions_total", "counter", "Requests retracted to free KV pages.", s.retractions);
  w.metric("loom_engine_steps_total", "counter", "Forward steps run.", s.steps);
  w.metric("loom_engine_overlapped_steps_total", "counter",
           "Steps queued before the previous step's tokens were on the host (overlap).", s.overlapped_steps);
  w.metric("loom_heap_releases_total", "counter", "Times the idle engine gave the heap's free pages back.",
           s.heap_releases);
  w.histogram("loom_time_to_first_token_seconds", "Time from submission to the first token.", s.ttft);
  w.histogram("loom_inter_token_latency_seconds", "Time between consecutive tokens of a request.", s.inter_token);

  w.header("loom_http_responses_total", "counter", "HTTP responses by status code.");
  for (auto [code, n] : http_responses) w.sample("loom_http_responses_total", n, "code=\"" + std::to_string(code) + "\"");
  return w.str();
}

}  // namespace loom::server
