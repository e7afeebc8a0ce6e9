// Splits a chat answer's text, as it streams, into reasoning, content and tool calls, the way
// Qwen3 writes them: `<think>...</think>` (--reasoning-parser qwen3) and
// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` (--tool-call-parser qwen3, the
// Hermes format). Text that might be the start of a tag is held back until it is known, so a
// streamed delta never shows half a tag. A tool call streams the way SGLang and vLLM stream it:
// once `{"name": "...", "arguments": ` has arrived, a first fragment with the call's id and name,
// then its arguments text in continuation fragments as it is written. A call that does not start
// that way is emitted whole at its closing tag, and one whose body is not valid JSON with a string
// "name" stays in the content, as written.
#pragma once
#include <string>
#include <vector>

namespace loom::server {

struct ParsedToolCall {
  int index = 0;          // position among this answer's tool calls
  std::string id;         // "call_" + a random hex suffix
  std::string name;
  std::string arguments;  // JSON text (a continuation: the next piece of it)
  bool continuation = false;  // more arguments text for the call `index` already announced
};

struct ChatDelta {
  std::string reasoning;
  std::string content;
  std::vector<ParsedToolCall> tool_calls;
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

// Allowed values of --tool-call-parser and --reasoning-parser ("" = off).
bool known_tool_call_parser(const std::string& name);
bool known_reasoning_parser(const std::string& name);

class ChatOutputParser {
 public:
  // `in_reasoning`: the prompt already opened `<think>` (templates of thinking-only models do), so
  // the answer starts as reasoning and only `</think>` ends it.
  ChatOutputParser(bool reasoning, bool tool_calls, bool in_reasoning = false);
  ChatDelta push(const std::string& text);  // the next piece of the answer
  ChatDelta finish();                       // the end: whatever was held back
  bool saw_tool_call() const { return calls_ > 0; }

 private:
  enum class State { content, reasoning, tool_call };
  void drain(ChatDelta& out, bool at_end);
  void emit_tool_call(ChatDelta& out, const std::string& body);
  void stream_tool_call(ChatDelta& out);
  void finish_streamed_call(ChatDelta& out, const std::string& body);

  bool reasoning_, tool_calls_;
  State state_ = State::content;
  std::string pending_;  // text not yet classified
  bool after_think_ = false;  // drop the newlines that follow </think>
  int calls_ = 0;
  // The call being streamed: its header was sent and args_sent_ bytes of the arguments text, which
  // starts at args_at_ in the call's body.
  bool streaming_call_ = false;
  size_t args_at_ = 0, args_sent_ = 0;
};

// The whole answer at once (non-streamed responses).
ChatDelta parse_chat_output(const std::string& text, bool reasoning, bool tool_calls, bool* saw_tool_call,
                            bool in_reasoning = false);

}  // namespace loom::server
