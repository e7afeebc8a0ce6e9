#include "loom/server/generation_output.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>

namespace loom::server {
namespace {
std::string sse_event(const nlohmann::json& j) { return "data: " + dump_json(j) + "\n\n"; }
constexpr std::string_view kDone = "data: [DONE]\n\n";
}  // namespace

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_response_id(Endpoint endpoint) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s%08llx%08llx", endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-",
                static_cast<unsigned long long>(salt & 0xffffffffu), static_cast<unsigned long long>(++counter));
  return buf;
}

SseEncoder::SseEncoder(ParsedRequest parsed, const tokenizer::Tokenizer& tok)
    : parsed_(std::move(parsed)), tok_(tok), id_(new_response_id(parsed_.endpoint)), created_(unix_time()),
      totals_(parsed_.n), first_(parsed_.n, true), unfinished_(parsed_.n) {
  if (parsed_.parse_reasoning || parsed_.parse_tool_calls)
    parsers_.assign(parsed_.n, ChatOutputParser(parsed_.parse_reasoning, parsed_.parse_tool_calls, parsed_.reasoning_open));
}

std::string SseEncoder::encode(const std::vector<ChoiceOutput>& outputs) {
  std::string events;
  for (const auto& [i, out] : outputs) {
    if (done_) break;
    events += encode_one(i, out);
  }
  return events;
}

std::string SseEncoder::encode_one(int i, const engine::RequestOutput& out) {
  if (out.finish_reason == engine::FinishReason::error) {
    done_ = true;
    return sse_event(error_body("server_error", str("generation failed: ", out.error), "", "")) + std::string(kDone);
  }
  std::string events;
  Generation delta;
  delta.add(out);
  totals_[i].add(out);
  std::optional<ChatDelta> split;  // the delta through the reasoning / tool-call parser
  if (!parsers_.empty()) {
    split = parsers_[i].push(delta.text);
    if (out.finished) {
      ChatDelta end = parsers_[i].finish();
      split->reasoning += end.reasoning;
      split->content += end.content;
      for (auto& c : end.tool_calls) split->tool_calls.push_back(std::move(c));
    }
  }
  const bool carries = split ? !split->empty() : !delta.text.empty();
  if (first_[i] || out.finished || carries || !delta.logprobs.empty()) {
    const bool called = !parsers_.empty() && parsers_[i].saw_tool_call();
    events += sse_event(chunk_json(parsed_, id_, created_, delta, first_[i], tok_, i, split ? &*split : nullptr, called));
    first_[i] = false;
  }
  if (out.finished && --unfinished_ == 0) {  // the last choice ended
    if (parsed_.include_usage) events += sse_event(usage_chunk_json(parsed_, id_, created_, combined_usage(totals_)));
    events += kDone;
    done_ = true;
  }
  return events;
}

AnswerCollector::AnswerCollector(ParsedRequest parsed, const tokenizer::Tokenizer& tok)
    : parsed_(std::move(parsed)), tok_(tok), choices_(parsed_.best_of) {}

bool AnswerCollector::add(const std::vector<ChoiceOutput>& outputs) {
  for (const auto& [i, out] : outputs) {
    choices_[i].add(out);
    if (out.finish_reason == engine::FinishReason::error && !failure_)
      failure_ = ApiError(500, "server_error", str("generation failed: ", out.error));
  }
  if (failure_) return true;
  for (const auto& g : choices_)
    if (g.finish_reason == engine::FinishReason::none) return false;
  return true;
}

nlohmann::json AnswerCollector::response() const {
  if (failure_) return failure_->body();
  const std::string id = new_response_id(parsed_.endpoint);
  if (parsed_.best_of > parsed_.n) {
    const Generation usage = combined_usage(choices_);  // every candidate was generated
    return response_json(parsed_, id, unix_time(), best_choices(choices_, parsed_.n), tok_, &usage);
  }
  return response_json(parsed_, id, unix_time(), choices_, tok_);
}

}  // namespace loom::server
