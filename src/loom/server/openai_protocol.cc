#include "loom/server/openai_protocol.h"

#include <algorithm>

#include <cstdlib>
#include <limits>

#include "loom/server/api_error.h"
#include "loom/server/structured_output.h"

namespace loom::server {
namespace {

using ojson = nlohmann::ordered_json;

// What one request may hold at most (a 400 beyond): hostile bodies must not cost unbounded work.
constexpr int kMaxJsonDepth = 64;         // arrays/objects inside each other
constexpr size_t kMaxMessages = 4096;     // chat messages
constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopStringBytes = 256;
constexpr size_t kMaxLogitBias = 1024;    // logit_bias entries (OpenAI allows 300)
constexpr size_t kMaxChoices = 16;        // n
using json = nlohmann::json;

// A present, non-null field, or null.
const ojson* field(const ojson& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

// obj[name] is the string `want`. Unlike obj.value(name, "") == want, a non-string there is no
// exception but simply not a match (found by fuzzing: a 500 for {"type": {}}).
bool field_equals(const ojson& obj, const char* name, const char* want) {
  const ojson* f = obj.is_object() ? field(obj, name) : nullptr;
  return f && f->is_string() && f->get_ref<const std::string&>() == want;
}

ApiError wrong_type(const char* name, const char* expected, const ojson& v) {
  return bad_request(name, str("'", name, "' must be ", expected, ", got ", v.type_name()));
}

double get_number(const ojson& body, const char* name, double fallback) {
  const ojson* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number()) throw wrong_type(name, "a number", *v);
  return v->get<double>();
}

int64_t as_int(const ojson& v, const char* name) {
  if (!v.is_number_integer()) throw wrong_type(name, "an integer", v);
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw bad_request(name, str("'", name, "' is out of range: ", v.dump()));
  return v.get<int64_t>();
}

std::optional<int64_t> get_int(const ojson& body, const char* name) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  return as_int(*v, name);
}

bool get_bool(const ojson& body, const char* name, bool fallback) {
  const ojson* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_boolean()) throw wrong_type(name, "a boolean", *v);
  return v->get<bool>();
}

// Token ids as given by the client: integers within int32 (the vocabulary check is the engine's).
std::vector<int32_t> token_ids(const ojson& arr, const char* name) {
  std::vector<int32_t> ids;
  for (const auto& v : arr) {
    const int64_t id = as_int(v, name);
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      throw bad_request(name, str("token id ", id, " is outside the vocabulary"));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

std::vector<int32_t> completion_prompt(const ojson& body, const tokenizer::Tokenizer& tok) {
  const ojson* p = field(body, "prompt");
  if (!p) throw bad_request("prompt", "'prompt' is required");
  if (p->is_string()) return tok.encode(p->get<std::string>());
  if (!p->is_array()) throw wrong_type("prompt", "a string, an array of token ids, or an array of one of those", *p);
  if (p->empty()) return {};
  const ojson& first = p->front();
  if (first.is_number()) return token_ids(*p, "prompt");
  if (p->size() > 1) throw bad_request("prompt", "batched prompts are not supported: send one prompt per request");
  if (first.is_string()) return tok.encode(first.get<std::string>());
  if (first.is_array()) return token_ids(first, "prompt");
  throw wrong_type("prompt", "a string, an array of token ids, or an array of one of those", first);
}

// Chat messages with content given as text parts flattened to a string, for the template.
ojson template_messages(const ojson& body) {
  const ojson* m = field(body, "messages");
  if (!m) throw bad_request("messages", "'messages' is required");
  if (!m->is_array()) throw wrong_type("messages", "an array", *m);
  if (m->empty()) throw bad_request("messages", "'messages' must not be empty");
  if (m->size() > kMaxMessages)
    throw bad_request("messages", str("at most ", kMaxMessages, " messages, got ", m->size()));
  ojson out = ojson::array();
  for (const auto& msg : *m) {
    if (!msg.is_object()) throw wrong_type("messages", "an array of objects", msg);
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string())
      throw bad_request("messages", "every message needs a string 'role'");
    ojson copy = msg;
    auto content = msg.find("content");
    if (content != msg.end() && content->is_array()) {
      std::string text;
      for (const auto& part : *content) {
        if (!part.is_object() || !field_equals(part, "type", "text") || !part.contains("text") || !part["text"].is_string())
          throw bad_request("messages", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
        text += part["text"].get<std::string>();
      }
      copy["content"] = text;
    } else if (content != msg.end() && !content->is_string() && !content->is_null()) {
      throw wrong_type("messages", "messages whose 'content' is a string or an array of text parts", *content);
    } else if (content == msg.end() || content->is_null()) {
      copy["content"] = "";  // an assistant turn that only called tools: templates concatenate content
    }
    out.push_back(std::move(copy));
  }
  return out;
}

// `tools` (each {"type": "function", "function": {"name": ...}}) as the template sees them, after
// `tool_choice`: "auto" (the default) keeps them, "none" hides them from the model; "required" and
// a named function keep them and force one call (to any of them / to that one) by a grammar.
struct ChatTools {
  ojson for_template;                      // null: no tools
  std::vector<grammar::ToolSpec> forced;   // the functions a forced call may name
};

grammar::ToolSpec tool_spec(const ojson& function) {
  grammar::ToolSpec t;
  t.name = function["name"].get<std::string>();
  if (auto p = function.find("parameters"); p != function.end() && !p->is_null()) {
    if (!p->is_object()) throw wrong_type("tools", "a function whose 'parameters' is a JSON schema object", *p);
    t.parameters_schema = p->dump();
  }
  return t;
}

ChatTools chat_tools(const ojson& body) {
  const ojson* t = field(body, "tools");
  if (!t || t->is_null()) {
    if (const ojson* c = field(body, "tool_choice"); c && !c->is_null() && !(c->is_string() && (*c == "none" || *c == "auto")))
      throw bad_request("tool_choice", "'tool_choice' forces a tool call but the request has no 'tools'");
    return {};
  }
  if (!t->is_array()) throw wrong_type("tools", "an array", *t);
  std::vector<std::string> names;
  for (const auto& tool : *t) {
    const auto fn = tool.is_object() ? tool.find("function") : tool.end();
    if (!tool.is_object() || !field_equals(tool, "type", "function") || fn == tool.end() || !fn->is_object() ||
        !fn->contains("name") || !(*fn)["name"].is_string())
      throw bad_request("tools", "every tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
    const std::string name = (*fn)["name"].get<std::string>();
    if (std::find(names.begin(), names.end(), name) != names.end())
      throw bad_request("tools", str("two tools are named '", name, "'"));
    names.push_back(name);
  }
  const ojson* c = field(body, "tool_choice");
  if (!c || c->is_null() || (c->is_string() && *c == "auto")) return {*t, {}};
  if (c->is_string() && *c == "none") return {};
  if (c->is_string() && *c == "required") {
    ChatTools out{*t, {}};
    for (const auto& tool : *t) out.forced.push_back(tool_spec(tool["function"]));
    if (out.forced.empty()) throw bad_request("tool_choice", "'tool_choice': 'required' needs at least one tool");
    return out;
  }
  if (c->is_object()) {
    const auto fn = c->find("function");
    if (!field_equals(*c, "type", "function") || fn == c->end() || !fn->is_object() || !fn->contains("name") ||
        !(*fn)["name"].is_string())
      throw bad_request("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", "
                                       "\"function\": {\"name\": ...}}");
    const std::string name = (*fn)["name"].get<std::string>();
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw bad_request("tool_choice", str("'tool_choice' names the function '", name, "', which is not in 'tools'"));
    for (const auto& tool : *t)
      if (tool["function"]["name"] == name) return {*t, {tool_spec(tool["function"])}};
  }
  throw bad_request("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a named function");
}

// Whether the prompt ends with `<think>` (and blanks): thinking-only templates (Qwen3's 2507
// Thinking releases) open the thought in the prompt, and the model writes only its `</think>`.
bool prompt_opens_thinking(const std::vector<int32_t>& prompt, const tokenizer::Tokenizer& tok) {
  const auto open = tok.token_id("<think>");
  if (!open) return false;
  for (auto it = prompt.rbegin(); it != prompt.rend(); ++it) {
    if (*it == *open) return true;
    const std::string& bytes = tok.token_bytes(*it);
    if (bytes.find_first_not_of(" \t\r\n") != std::string::npos) return false;
  }
  return false;
}

// The rendered prompt; `thinking` gets chat_template_kwargs.enable_thinking when given.
std::vector<int32_t> chat_prompt(const ojson& body, const tokenizer::Tokenizer& tok, const ojson& tools,
                                 std::optional<bool>& thinking) {
  ojson messages = template_messages(body);
  if (const ojson* kw = field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) throw wrong_type("chat_template_kwargs", "an object", *kw);
    if (const ojson* e = field(*kw, "enable_thinking")) {
      if (!e->is_boolean()) throw wrong_type("enable_thinking", "a boolean", *e);
      thinking = e->get<bool>();
    }
  }
  if (!tok.has_chat_template()) throw bad_request("messages", "this model's tokenizer has no chat template");
  std::string text;
  try {
    text = tok.apply_chat_template(messages, tools, true, thinking);
  } catch (const Error& e) {  // raised by the template while rendering these messages
    throw bad_request("messages", str("the chat template rejected the messages: ", e.what()));
  }
  return tok.encode(text);
}

void parse_stop(const ojson& body, engine::SamplingParams& p) {
  if (const ojson* s = field(body, "stop")) {
    if (s->is_string()) {
      p.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > kMaxStopStrings)
        throw bad_request("stop", str("at most ", kMaxStopStrings, " stop strings, got ", s->size()));
      for (const auto& v : *s) {
        if (!v.is_string()) throw wrong_type("stop", "a string or an array of strings", v);
        p.stop.push_back(v.get<std::string>());
      }
    } else {
      throw wrong_type("stop", "a string or an array of strings", *s);
    }
    for (const auto& stop : p.stop)
      if (stop.size() > kMaxStopStringBytes)
        throw bad_request("stop", str("a stop string may have at most ", kMaxStopStringBytes, " bytes, got ",
                                      stop.size()));
  }
  if (const ojson* ids = field(body, "stop_token_ids")) {
    if (!ids->is_array()) throw wrong_type("stop_token_ids", "an array of token ids", *ids);
    p.stop_token_ids = token_ids(*ids, "stop_token_ids");
  }
}

void parse_logprobs(Endpoint endpoint, const ojson& body, ParsedRequest& out) {
  auto& p = out.request.params;
  if (endpoint == Endpoint::completions) {
    if (auto k = get_int(body, "logprobs")) {
      if (*k < 0 || *k > 20) throw bad_request("logprobs", str("'logprobs' must be in [0, 20], got ", *k));
      p.logprobs = *k;
    }
  } else {
    const bool want = get_bool(body, "logprobs", false);
    const auto top = get_int(body, "top_logprobs");
    if (top && (*top < 0 || *top > 20)) throw bad_request("top_logprobs", str("'top_logprobs' must be in [0, 20], got ", *top));
    if (top && !want) throw bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (want) p.logprobs = top.value_or(0);
  }
  out.want_logprobs = p.logprobs >= 0;
}

std::string token_text(const tokenizer::Tokenizer& tok, int32_t id) {
  return id >= 0 && id < tok.vocab_size() ? tok.decode({id}) : std::string();
}

json token_bytes(const tokenizer::Tokenizer& tok, int32_t id) {
  json bytes = json::array();
  if (id >= 0 && id < tok.vocab_size())
    for (unsigned char c : tok.token_bytes(id)) bytes.push_back(static_cast<int>(c));
  return bytes;
}

json logprobs_json(const ParsedRequest& req, const Generation& g, const tokenizer::Tokenizer& tok) {
  if (!req.want_logprobs) return nullptr;
  if (req.endpoint == Endpoint::chat) {
    json content = json::array();
    for (const auto& lp : g.logprobs) {
      json top = json::array();
      for (auto [id, v] : lp.top)
        top.push_back({{"token", token_text(tok, id)}, {"logprob", v}, {"bytes", token_bytes(tok, id)}});
      content.push_back({{"token", token_text(tok, lp.token)},
                         {"logprob", lp.logprob},
                         {"bytes", token_bytes(tok, lp.token)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), values = json::array(), tops = json::array();
  for (const auto& lp : g.logprobs) {
    tokens.push_back(token_text(tok, lp.token));
    values.push_back(lp.logprob);
    json top = json::object();
    for (auto [id, v] : lp.top) top[token_text(tok, id)] = v;
    tops.push_back(top);
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}};
}

// message.tool_calls / delta.tool_calls (a streamed call carries its index and comes whole).
json tool_calls_json(const std::vector<ParsedToolCall>& calls, bool streamed) {
  json list = json::array();
  for (const auto& c : calls) {
    if (c.continuation) {  // streamed only: the next piece of the call's arguments
      list.push_back({{"index", c.index}, {"function", {{"arguments", c.arguments}}}});
      continue;
    }
    json j = {{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}};
    if (streamed) j["index"] = c.index;
    list.push_back(std::move(j));
  }
  return list;
}

json finish_json(engine::FinishReason r) {
  if (r == engine::FinishReason::none) return nullptr;
  return engine::finish_reason_name(r);
}

}  // namespace

ParsedRequest parse_request(Endpoint endpoint, const std::string& body_text, const ProtocolContext& ctx) {
  ojson body;
  try {
    // The depth check runs while parsing, so a deeply nested body is refused before it is built.
    body = ojson::parse(body_text, [](int depth, ojson::parse_event_t, ojson&) {
      if (depth > kMaxJsonDepth)
        throw bad_request("", str("the request body nests arrays and objects deeper than ", kMaxJsonDepth, " levels"));
      return true;
    });
  } catch (const ojson::parse_error& e) {
    throw bad_request("", str("the request body is not valid JSON: ", e.what()));
  } catch (const ojson::out_of_range& e) {  // a number beyond a double (found by tests/fuzz)
    throw bad_request("", str("the request body holds a number out of range: ", e.what()));
  }
  if (!body.is_object()) throw bad_request("", str("the request body must be a JSON object, got ", body.type_name()));

  ParsedRequest out;
  out.endpoint = endpoint;
  out.model = ctx.served_model_name;
  if (const ojson* m = field(body, "model")) {
    if (!m->is_string()) throw wrong_type("model", "a string", *m);
    if (m->get<std::string>() != ctx.served_model_name)
      throw ApiError(404, "invalid_request_error",
                     str("the model '", m->get<std::string>(), "' does not exist (this server serves '",
                         ctx.served_model_name, "')"),
                     "model", "model_not_found");
  }
  if (auto n = get_int(body, "n")) {
    if (*n < 1 || *n > static_cast<int64_t>(kMaxChoices))
      throw bad_request("n", str("'n' must be in [1, ", kMaxChoices, "], got ", *n));
    out.n = static_cast<int>(*n);
  }
  out.best_of = out.n;
  if (auto best_of = get_int(body, "best_of")) {
    if (endpoint == Endpoint::chat) throw bad_request("best_of", "'best_of' is for /v1/completions");
    if (*best_of < out.n || *best_of > static_cast<int64_t>(kMaxChoices))
      throw bad_request("best_of", str("'best_of' must be in [n = ", out.n, ", ", kMaxChoices, "], got ", *best_of));
    out.best_of = static_cast<int>(*best_of);
  }
  const bool echo = get_bool(body, "echo", false);
  if (echo && endpoint == Endpoint::chat) throw bad_request("echo", "'echo' is for /v1/completions");

  auto& p = out.request.params;
  if (const ojson* lb = field(body, "logit_bias")) {  // {"token id": bias}
    if (!lb->is_object()) throw wrong_type("logit_bias", "an object mapping token ids to biases", *lb);
    if (lb->size() > kMaxLogitBias)
      throw bad_request("logit_bias", str("at most ", kMaxLogitBias, " logit_bias entries, got ", lb->size()));
    for (const auto& [key, value] : lb->items()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > std::numeric_limits<int32_t>::max())
        throw bad_request("logit_bias", str("logit_bias keys must be token ids, got '", key, "'"));
      if (!value.is_number()) throw wrong_type("logit_bias", "an object whose values are numbers", value);
      p.logit_bias.emplace_back(static_cast<int32_t>(id), value.get<float>());
    }
  }
  p.temperature = get_number(body, "temperature", 1.0);
  p.top_p = get_number(body, "top_p", 1.0);
  p.top_k = get_int(body, "top_k").value_or(-1);
  p.min_p = get_number(body, "min_p", 0.0);
  p.frequency_penalty = get_number(body, "frequency_penalty", 0.0);
  p.presence_penalty = get_number(body, "presence_penalty", 0.0);
  p.repetition_penalty = get_number(body, "repetition_penalty", 1.0);
  if (auto seed = get_int(body, "seed")) p.seed = static_cast<uint64_t>(*seed);
  p.ignore_eos = get_bool(body, "ignore_eos", false);
  p.skip_special_tokens = get_bool(body, "skip_special_tokens", true);
  parse_stop(body, p);
  parse_logprobs(endpoint, body, out);
  out.stream = get_bool(body, "stream", false);
  if (out.stream && out.best_of > out.n)
    throw bad_request("best_of", "'best_of' greater than 'n' cannot be streamed: the best are known only at the end");
  if (out.best_of > out.n && p.logprobs < 0) p.logprobs = 0;  // ranks the candidates; not shown
  if (const ojson* so = field(body, "stream_options")) {
    if (!so->is_object()) throw wrong_type("stream_options", "an object", *so);
    out.include_usage = get_bool(*so, "include_usage", false);
  }

  ChatTools tools;
  std::optional<bool> thinking;
  if (endpoint == Endpoint::chat) {
    tools = chat_tools(body);
    out.request.prompt = chat_prompt(body, *ctx.tokenizer, tools.for_template, thinking);
    out.parse_reasoning = !ctx.reasoning_parser.empty();
    out.reasoning_open = out.parse_reasoning && prompt_opens_thinking(out.request.prompt, *ctx.tokenizer);
    // A forced call is written in the <tool_call> form the parser reads, whatever --tool-call-parser says.
    out.parse_tool_calls = (!ctx.tool_call_parser.empty() && !tools.for_template.is_null()) || !tools.forced.empty();
  } else {
    out.request.prompt = completion_prompt(body, *ctx.tokenizer);
  }
  if (ctx.grammar) {
    p.constraint = request_constraint(body, tools.forced, *ctx.grammar);
    // A thinking model reasons freely first; the grammar starts after its </think>.
    if (p.constraint && out.parse_reasoning && thinking != false) p.constraint_after = ctx.tokenizer->token_id("</think>");
  } else if (field(body, "response_format") || field(body, "regex") || field(body, "ebnf") || !tools.forced.empty()) {
    throw bad_request("response_format", "this server has no grammar engine for constrained decoding");
  }
  if (echo) {  // the prompt's text leads the answer (prompt logprobs would need every position's logits)
    if (out.want_logprobs) throw bad_request("echo", "'echo' with 'logprobs' is not supported");
    try {  // token ids are checked against the model later; echo needs them in the tokenizer's vocabulary now
      out.echo_text = ctx.tokenizer->decode(out.request.prompt);
    } catch (const InvalidArgument& e) {
      throw bad_request("prompt", str("'echo': ", e.what()));
    }
  }
  auto max_tokens = get_int(body, "max_tokens");
  if (endpoint == Endpoint::chat)
    if (auto mct = get_int(body, "max_completion_tokens")) max_tokens = mct;
  if (max_tokens) {
    p.max_tokens = *max_tokens;
  } else if (endpoint == Endpoint::chat) {
    // Chat answers run to the end of the context (or of the KV pool) unless told otherwise.
    int64_t room = ctx.limits.context_length > 0 ? ctx.limits.context_length : ctx.limits.kv_capacity;
    if (ctx.limits.kv_capacity > 0) room = std::min(room, ctx.limits.kv_capacity);
    p.max_tokens = std::max<int64_t>(1, room - static_cast<int64_t>(out.request.prompt.size()));
  }
  return out;
}

void Generation::add(const engine::RequestOutput& out) {
  text += out.text;
  token_ids.insert(token_ids.end(), out.token_ids.begin(), out.token_ids.end());
  logprobs.insert(logprobs.end(), out.logprobs.begin(), out.logprobs.end());
  if (out.finished) finish_reason = out.finish_reason;
  prompt_tokens = out.prompt_tokens;
  completion_tokens = out.completion_tokens;
  cached_tokens = out.cached_tokens;
}

nlohmann::json usage_json(const Generation& g) {
  return {{"prompt_tokens", g.prompt_tokens},
          {"completion_tokens", g.completion_tokens},
          {"total_tokens", g.prompt_tokens + g.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", g.cached_tokens}}}};
}

// The fields every response and stream chunk share.
static json envelope(const ParsedRequest& req, const std::string& id, int64_t created, bool chunk, json choices) {
  const char* object = req.endpoint != Endpoint::chat ? "text_completion" : chunk ? "chat.completion.chunk" : "chat.completion";
  return {{"id", id}, {"object", object}, {"created", created}, {"model", req.model}, {"choices", std::move(choices)}};
}

Generation combined_usage(const std::vector<Generation>& choices) {
  Generation u;
  if (choices.empty()) return u;
  u.prompt_tokens = choices[0].prompt_tokens;
  u.cached_tokens = choices[0].cached_tokens;
  for (const Generation& g : choices) u.completion_tokens += g.completion_tokens;
  return u;
}

std::vector<Generation> best_choices(std::vector<Generation> candidates, int n) {
  auto mean_logprob = [](const Generation& g) {
    double s = 0;
    for (const auto& lp : g.logprobs) s += lp.logprob;
    return g.logprobs.empty() ? -1e300 : s / static_cast<double>(g.logprobs.size());
  };
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const Generation& a, const Generation& b) { return mean_logprob(a) > mean_logprob(b); });
  candidates.resize(static_cast<size_t>(n));
  return candidates;
}

nlohmann::json response_json(const ParsedRequest& req, const std::string& id, int64_t created,
                             const std::vector<Generation>& choices, const tokenizer::Tokenizer& tok,
                             const Generation* usage) {
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const Generation& g = choices[i];
    json choice = {{"index", i}, {"logprobs", logprobs_json(req, g, tok)}, {"finish_reason", finish_json(g.finish_reason)}};
    if (req.endpoint == Endpoint::chat && (req.parse_reasoning || req.parse_tool_calls)) {
      bool called = false;
      const ChatDelta d = parse_chat_output(g.text, req.parse_reasoning, req.parse_tool_calls, &called, req.reasoning_open);
      json message = {{"role", "assistant"}};
      // With tool calls and nothing else to say, content is null (as OpenAI sends it).
      const bool blank = d.content.find_first_not_of(" \t\r\n") == std::string::npos;
      message["content"] = called && blank ? json(nullptr) : json(d.content);
      if (req.parse_reasoning) message["reasoning_content"] = d.reasoning.empty() ? json(nullptr) : json(d.reasoning);
      if (called) message["tool_calls"] = tool_calls_json(d.tool_calls, false);
      choice["message"] = std::move(message);
      if (called && g.finish_reason == engine::FinishReason::stop) choice["finish_reason"] = "tool_calls";
    } else if (req.endpoint == Endpoint::chat) {
      choice["message"] = {{"role", "assistant"}, {"content", g.text}};
    } else {
      choice["text"] = req.echo_text + g.text;
    }
    list.push_back(std::move(choice));
  }
  json out = envelope(req, id, created, /*chunk=*/false, std::move(list));
  out["usage"] = usage_json(usage ? *usage : combined_usage(choices));
  return out;
}

nlohmann::json chunk_json(const ParsedRequest& req, const std::string& id, int64_t created, const Generation& delta,
                          bool first, const tokenizer::Tokenizer& tok, int index, const ChatDelta* parsed,
                          bool tool_calls_made) {
  json choice = {{"index", index}, {"logprobs", logprobs_json(req, delta, tok)}, {"finish_reason", finish_json(delta.finish_reason)}};
  if (tool_calls_made && delta.finish_reason == engine::FinishReason::stop) choice["finish_reason"] = "tool_calls";
  if (req.endpoint == Endpoint::chat && parsed) {
    json d = json::object();
    if (first) d["role"] = "assistant";
    if (!parsed->content.empty() || (parsed->empty() && !first)) d["content"] = parsed->content;
    if (!parsed->reasoning.empty()) d["reasoning_content"] = parsed->reasoning;
    if (!parsed->tool_calls.empty()) d["tool_calls"] = tool_calls_json(parsed->tool_calls, true);
    choice["delta"] = d;
  } else if (req.endpoint == Endpoint::chat) {
    json d = json::object();
    if (first) d["role"] = "assistant";
    if (!delta.text.empty() || !first) d["content"] = delta.text;
    choice["delta"] = d;
  } else {
    choice["text"] = first ? req.echo_text + delta.text : delta.text;
  }
  return envelope(req, id, created, /*chunk=*/true, json::array({choice}));
}

nlohmann::json usage_chunk_json(const ParsedRequest& req, const std::string& id, int64_t created,
                                const Generation& total) {
  json out = envelope(req, id, created, /*chunk=*/true, json::array());
  out["usage"] = usage_json(total);
  return out;
}

}  // namespace loom::server
