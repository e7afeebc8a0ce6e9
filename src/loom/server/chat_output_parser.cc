#include "loom/server/chat_output_parser.h"

#include <nlohmann/json.hpp>

#include <random>
#include <regex>

namespace loom::server {
namespace {

constexpr const char* kThinkOpen = "<think>";
constexpr const char* kThinkClose = "</think>";
constexpr const char* kToolOpen = "<tool_call>";
constexpr const char* kToolClose = "</tool_call>";

// Length of the longest suffix of `s` that is a proper prefix of `tag` (text to hold back).
size_t partial_tag_suffix(const std::string& s, const std::string& tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.compare(s.size() - n, n, tag, 0, n) == 0) return n;
  return 0;
}

std::string call_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += hex[rng() & 15];
  return id;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

bool known_tool_call_parser(const std::string& name) { return name.empty() || name == "qwen3" || name == "hermes"; }
bool known_reasoning_parser(const std::string& name) { return name.empty() || name == "qwen3"; }

ChatOutputParser::ChatOutputParser(bool reasoning, bool tool_calls, bool in_reasoning)
    : reasoning_(reasoning), tool_calls_(tool_calls), state_(reasoning && in_reasoning ? State::reasoning : State::content) {}

ChatDelta ChatOutputParser::push(const std::string& text) {
  ChatDelta out;
  pending_ += text;
  drain(out, false);
  return out;
}

ChatDelta ChatOutputParser::finish() {
  ChatDelta out;
  drain(out, true);
  return out;
}

void ChatOutputParser::emit_tool_call(ChatDelta& out, const std::string& body) {
  const std::string json_text = trim(body);
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {  // not a call: keep it visible
    out.content += std::string(kToolOpen) + body + kToolClose;
    return;
  }
  ParsedToolCall call;
  call.index = calls_++;
  call.id = call_id();
  call.name = j["name"].get<std::string>();
  const auto args = j.find("arguments");
  call.arguments = args == j.end() ? "{}" : args->is_string() ? args->get<std::string>() : args->dump();
  out.tool_calls.push_back(std::move(call));
}

// The start of a streamed call: `{"name": "<name>", "arguments": ` (any spacing). On a match,
// `name` is the decoded name and `end` where the arguments text begins.
static bool call_prefix(const std::string& body, std::string& name, size_t& end) {
  static const std::regex prefix(R"(^\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*)");
  std::smatch m;
  if (!std::regex_search(body, m, prefix)) return false;
  const auto quoted = nlohmann::json::parse(m[1].str(), nullptr, false);
  if (!quoted.is_string()) return false;
  name = quoted.get<std::string>();
  end = static_cast<size_t>(m.length(0));
  // A string-valued "arguments" (JSON inside a string) is decoded whole at the end instead.
  return end < body.size() && body[end] != '"';
}

// Sends what can be sent of the current call: its header once the prefix is in, then the
// arguments text written so far, except a tail that may still turn out to close the call
// (the wrapper's `}`, blanks, the start of `</tool_call>`).
void ChatOutputParser::stream_tool_call(ChatDelta& out) {
  if (!streaming_call_) {
    ParsedToolCall head;
    if (!call_prefix(pending_, head.name, args_at_)) return;
    head.index = calls_++;
    head.id = call_id();
    out.tool_calls.push_back(std::move(head));
    streaming_call_ = true;
    args_sent_ = 0;
  }
  std::string args = pending_.substr(args_at_);
  args.resize(args.size() - partial_tag_suffix(args, kToolClose));
  const size_t keep = args.find_last_not_of(" \t\r\n}");
  args.resize(keep == std::string::npos ? 0 : keep + 1);
  if (args.size() > args_sent_) {
    ParsedToolCall more;
    more.index = calls_ - 1;
    more.continuation = true;
    more.arguments = args.substr(args_sent_);
    args_sent_ = args.size();
    out.tool_calls.push_back(std::move(more));
  }
}

// The streamed call's closing tag (or the answer's end): the rest of its arguments, which are the
// body's text after the prefix up to the wrapper's closing brace.
void ChatOutputParser::finish_streamed_call(ChatDelta& out, const std::string& body) {
  std::string args = trim(body.substr(std::min(args_at_, body.size())));
  if (!args.empty() && args.back() == '}' &&
      !nlohmann::json::accept(args))  // the wrapper's brace, unless the answer ended before it
    args = trim(args.substr(0, args.size() - 1));
  if (args.size() > args_sent_ && args.compare(0, args_sent_, body, args_at_, args_sent_) == 0) {
    ParsedToolCall more;
    more.index = calls_ - 1;
    more.continuation = true;
    more.arguments = args.substr(args_sent_);
    out.tool_calls.push_back(std::move(more));
  }
  streaming_call_ = false;
}

void ChatOutputParser::drain(ChatDelta& out, bool at_end) {
  while (!pending_.empty()) {
    if (state_ == State::tool_call) {
      const size_t close = pending_.find(kToolClose);
      if (close == std::string::npos) {
        if (at_end && streaming_call_) {
          finish_streamed_call(out, pending_);
          pending_.clear();
        } else if (at_end) {  // the answer ended inside a call: show what was written
          out.content += kToolOpen + pending_;
          pending_.clear();
        } else {
          stream_tool_call(out);
        }
        return;
      }
      if (streaming_call_) finish_streamed_call(out, pending_.substr(0, close));
      else emit_tool_call(out, pending_.substr(0, close));
      pending_.erase(0, close + std::string(kToolClose).size());
      state_ = State::content;
      continue;
    }
    if (after_think_) {  // Qwen3 puts a blank line after </think>: layout, not content
      const size_t keep = pending_.find_first_not_of('\n');
      pending_.erase(0, keep == std::string::npos ? pending_.size() : keep);
      if (pending_.empty()) return;
      after_think_ = false;
    }
    std::string& sink = state_ == State::reasoning ? out.reasoning : out.content;
    // The tags that end this state or start another.
    std::vector<std::string> tags;
    if (state_ == State::reasoning) {
      tags = {kThinkClose};
    } else {
      if (reasoning_) tags.push_back(kThinkOpen);
      if (tool_calls_) tags.push_back(kToolOpen);
    }
    size_t at = std::string::npos;
    std::string found;
    for (const auto& t : tags) {
      const size_t p = pending_.find(t);
      if (p < at) at = p, found = t;
    }
    if (at == std::string::npos) {
      size_t hold = 0;
      if (!at_end)
        for (const auto& t : tags) hold = std::max(hold, partial_tag_suffix(pending_, t));
      sink += pending_.substr(0, pending_.size() - hold);
      pending_.erase(0, pending_.size() - hold);
      return;
    }
    sink += pending_.substr(0, at);
    pending_.erase(0, at + found.size());
    if (found == kThinkOpen) {
      state_ = State::reasoning;
    } else if (found == kThinkClose) {
      state_ = State::content;
      after_think_ = true;
    } else {
      state_ = State::tool_call;
    }
  }
}

ChatDelta parse_chat_output(const std::string& text, bool reasoning, bool tool_calls, bool* saw_tool_call,
                            bool in_reasoning) {
  ChatOutputParser p(reasoning, tool_calls, in_reasoning);
  ChatDelta all = p.push(text);
  ChatDelta end = p.finish();
  all.reasoning += end.reasoning;
  all.content += end.content;
  // Whole calls: continuation fragments join the call they continue.
  std::vector<ParsedToolCall> calls;
  for (auto* part : {&all.tool_calls, &end.tool_calls})
    for (auto& c : *part) {
      if (c.continuation && !calls.empty() && calls.back().index == c.index) calls.back().arguments += c.arguments;
      else calls.push_back(std::move(c));
    }
  all.tool_calls = std::move(calls);
  if (saw_tool_call) *saw_tool_call = p.saw_tool_call();
  return all;
}

}  // namespace loom::server
