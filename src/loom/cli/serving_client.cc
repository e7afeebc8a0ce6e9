#include "loom/cli/serving_client.h"

#include <chrono>

#include <httplib.h>

#include "loom/tensor/error.h"

namespace loom::cli {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

httplib::Headers headers_of(const ServingTarget& t) {
  httplib::Headers h;
  if (!t.api_key.empty()) h.emplace("Authorization", "Bearer " + t.api_key);
  return h;
}

// The text a streamed (or whole) response object carries, "" for none.
std::string text_of(const nlohmann::json& j, bool chat) {
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return "";
  const auto& c = j["choices"][0];
  const auto* field = chat ? (c.contains("delta") ? &c["delta"] : (c.contains("message") ? &c["message"] : nullptr))
                           : &c;
  if (!field || !field->is_object()) return "";
  const char* key = chat ? "content" : "text";
  return field->contains(key) && (*field)[key].is_string() ? (*field)[key].get<std::string>() : "";
}

}  // namespace

ServingTarget parse_base_url(const std::string& url) {
  const size_t scheme = url.find("://");
  LOOM_CHECK_ARG(scheme != std::string::npos && (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0),
                 "--base-url '", url, "' is not http://host:port (or https://)");
  ServingTarget t;
  const size_t slash = url.find('/', scheme + 3);
  t.origin = url.substr(0, slash);
  LOOM_CHECK_ARG(t.origin.size() > scheme + 3, "--base-url '", url, "' has no host");
  t.prefix = slash == std::string::npos ? "" : url.substr(slash);
  while (!t.prefix.empty() && t.prefix.back() == '/') t.prefix.pop_back();
  if (t.prefix.size() >= 3 && t.prefix.compare(t.prefix.size() - 3, 3, "/v1") == 0) t.prefix.resize(t.prefix.size() - 3);
  return t;
}

std::string first_served_model(const ServingTarget& t) {
  httplib::Client cli(t.origin);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(30);
  auto res = cli.Get(t.prefix + "/v1/models", headers_of(t));
  LOOM_CHECK_ARG(res, "cannot reach ", t.origin, t.prefix, "/v1/models: ", httplib::to_string(res.error()),
                 " (is the server up? --base-url)");
  LOOM_CHECK_ARG(res->status == 200, t.origin, t.prefix, "/v1/models answered ", res->status, ": ", res->body);
  try {
    return nlohmann::json::parse(res->body).at("data").at(0).at("id").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw InvalidArgument(str(t.origin, t.prefix, "/v1/models lists no model (", e.what(), "); pass --model"));
  }
}

RequestResult send_request(const ServingTarget& t, const BenchPrompt& p) {
  nlohmann::json body = {{"model", t.model}, {"max_tokens", p.output_tokens}, {"temperature", 0.0},
                         {"stream", t.stream}, {"ignore_eos", t.ignore_eos}};
  if (t.chat)
    body["messages"] = {{{"role", "user"}, {"content", p.prompt}}};
  else
    body["prompt"] = p.prompt;
  if (t.stream) body["stream_options"] = {{"include_usage", true}};
  body.update(t.extra_body);

  RequestResult r;
  r.prompt_tokens = p.prompt_tokens;
  int status = 0;
  std::string pending, error_body, whole;
  int64_t chunks = 0;
  bool usage_seen = false;
  Clock::time_point last;
  const Clock::time_point start = Clock::now();
  const auto on_object = [&](const nlohmann::json& j) {
    if (j.contains("error")) {
      error_body = j["error"].dump();
      return;
    }
    if (!text_of(j, t.chat).empty()) {
      const Clock::time_point now = Clock::now();
      if (chunks == 0)
        r.ttft_s = std::chrono::duration<double>(now - start).count();
      else
        r.itl_s.push_back(std::chrono::duration<double>(now - last).count());
      last = now;
      ++chunks;
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      usage_seen = true;
      r.output_tokens = j["usage"].value("completion_tokens", int64_t{0});
      r.prompt_tokens = j["usage"].value("prompt_tokens", r.prompt_tokens);
    }
  };

  httplib::Client cli(t.origin);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(t.timeout_s);
  httplib::Request req;
  req.method = "POST";
  req.path = t.prefix + (t.chat ? "/v1/chat/completions" : "/v1/completions");
  req.headers = headers_of(t);
  req.headers.emplace("Content-Type", "application/json");
  req.body = body.dump();
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200 || !t.stream) {
      (status != 200 ? error_body : whole).append(data, n);
      return true;
    }
    pending.append(data, n);
    for (size_t eol; (eol = pending.find('\n')) != std::string::npos;) {
      std::string line = pending.substr(0, eol);
      pending.erase(0, eol + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data: ", 0) != 0 || line == "data: [DONE]") continue;
      try {
        on_object(nlohmann::json::parse(line.substr(6)));
      } catch (const nlohmann::json::exception&) {
        error_body = "unparseable stream line: " + line.substr(0, 200);
      }
    }
    return true;
  };
  const auto res = cli.send(req);
  r.e2e_s = since(start);
  if (!res) {
    // How far it got tells a refused connection from a stream cut short.
    r.error = str("request failed: ", httplib::to_string(res.error()), " (HTTP status ", status, ", ", chunks,
                  " stream chunks, ", r.e2e_s, " s after sending)");
    return r;
  }
  if (status != 200) {
    r.error = str("HTTP ", status, ": ", error_body.substr(0, 500));
    return r;
  }
  if (!t.stream) {
    try {
      on_object(nlohmann::json::parse(whole));
    } catch (const nlohmann::json::exception& e) {
      r.error = str("unparseable response: ", e.what());
      return r;
    }
    r.ttft_s = r.e2e_s;  // the whole answer arrives at once
  }
  if (!error_body.empty()) {
    r.error = error_body.substr(0, 500);
    return r;
  }
  if (!usage_seen) r.output_tokens = chunks;
  r.ok = true;
  return r;
}

}  // namespace loom::cli
