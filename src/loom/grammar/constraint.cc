#include "loom/grammar/constraint.h"

#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>
#include <xgrammar/xgrammar.h>

namespace loom::grammar {
namespace {

// JSON whitespace runs are capped: a model (a random-weight one above all) that starts emitting
// blanks inside a JSON value could otherwise do so until max_tokens. 20 covers pretty-printing
// nested ten levels at two spaces.
constexpr int kMaxJsonWhitespace = 20;

DLTensor mask_tensor(uint32_t* words, int64_t* shape, int ndim) {
  DLTensor t{};
  t.data = words;
  t.device = DLDevice{kDLCPU, 0};
  t.ndim = ndim;
  t.dtype = xgrammar::GetBitmaskDLType();
  t.shape = shape;
  t.strides = nullptr;
  t.byte_offset = 0;
  return t;
}

// xgrammar's messages start "[hh:mm:ss] /its/source.cc:123: "; the client needs only the rest.
std::string plain_message(std::string m) {
  if (!m.empty() && m[0] == '[') {
    const size_t close = m.find("] ");
    const size_t colon = close == std::string::npos ? close : m.find(": ", close + 2);
    if (colon != std::string::npos) m = m.substr(colon + 2);
  }
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

}  // namespace

struct Constraint {
  xgrammar::CompiledGrammar compiled;
  bool ends_without_stop_token = false;  // the model has no stop token: the grammar's end ends it
};

struct Compiler::Impl {
  Impl(xgrammar::TokenizerInfo info, bool has_stop)
      : compiler(info, std::max(1u, std::min(8u, std::thread::hardware_concurrency())), /*cache_enabled=*/true),
        has_stop_token(has_stop) {}
  xgrammar::GrammarCompiler compiler;
  bool has_stop_token;
};

namespace {
// f(the xgrammar compiler) -> CompiledGrammar; xgrammar reports bad grammars with its own
// exception types (all std::exception).
template <typename CompilerImpl, typename F>
std::shared_ptr<const Constraint> compile_or_throw(const char* what, CompilerImpl& impl, F&& f) {
  try {
    return std::make_shared<const Constraint>(Constraint{f(impl.compiler), !impl.has_stop_token});
  } catch (const std::exception& e) {
    throw InvalidConstraint(str("the ", what, " cannot be compiled: ", plain_message(e.what())));
  }
}
}  // namespace

Compiler::Compiler(tokenizer::Tokenizer tokenizer, int64_t model_vocab, std::vector<int32_t> stop_token_ids)
    : tokenizer_(std::move(tokenizer)), model_vocab_(model_vocab), stop_token_ids_(std::move(stop_token_ids)) {}

Compiler::~Compiler() = default;

Compiler::Impl& Compiler::impl() {
  std::call_once(once_, [this] {
    // Raw bytes per id; special tokens as "" so the grammar never emits them (only the stop ids).
    // Ids past the model's logits (a test model's small vocabulary) can never be drawn.
    const int32_t n = static_cast<int32_t>(std::min<int64_t>(tokenizer_.vocab_size(), model_vocab_));
    std::vector<std::string> vocab(static_cast<size_t>(n));
    for (int32_t id = 0; id < n; ++id)
      if (!tokenizer_.is_special(id)) vocab[static_cast<size_t>(id)] = tokenizer_.token_bytes(id);
    std::vector<int32_t> stops;
    for (int32_t id : stop_token_ids_)
      if (id < model_vocab_) stops.push_back(id);
    xgrammar::TokenizerInfo info(vocab, xgrammar::VocabType::RAW, static_cast<int>(model_vocab_), stops);
    impl_ = std::make_unique<Impl>(std::move(info), !stops.empty());
  });
  return *impl_;
}

std::shared_ptr<const Constraint> Compiler::json_object() {
  return compile_or_throw("JSON object grammar", impl(), [&](xgrammar::GrammarCompiler& c) {
    return c.CompileJSONSchema(R"({"type": "object"})", /*any_whitespace=*/true, std::nullopt, std::nullopt,
                               /*strict_mode=*/false, kMaxJsonWhitespace);
  });
}

std::shared_ptr<const Constraint> Compiler::json_schema(const std::string& schema) {
  // xgrammar accepts some non-JSON text silently; a schema must at least be a JSON object.
  nlohmann::json parsed = nlohmann::json::parse(schema, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !(parsed.is_object() || parsed.is_boolean()))
    throw InvalidConstraint("the JSON schema must be a JSON object");
  return compile_or_throw("JSON schema", impl(), [&](xgrammar::GrammarCompiler& c) {
    return c.CompileJSONSchema(schema, /*any_whitespace=*/true, std::nullopt, std::nullopt, /*strict_mode=*/true,
                               kMaxJsonWhitespace);
  });
}

std::shared_ptr<const Constraint> Compiler::regex(const std::string& pattern) {
  return compile_or_throw("regex", impl(), [&](xgrammar::GrammarCompiler& c) { return c.CompileRegex(pattern); });
}

std::shared_ptr<const Constraint> Compiler::ebnf(const std::string& grammar) {
  return compile_or_throw("EBNF grammar", impl(),
                          [&](xgrammar::GrammarCompiler& c) { return c.CompileGrammar(grammar, "root"); });
}

std::shared_ptr<const Constraint> Compiler::tool_call(const std::vector<ToolSpec>& tools) {
  LOOM_CHECK_ARG(!tools.empty(), "a forced tool call needs at least one tool");
  return compile_or_throw("tool call grammar", impl(), [&](xgrammar::GrammarCompiler& c) {
    std::vector<xgrammar::Grammar> calls;
    for (const ToolSpec& t : tools) {
      nlohmann::ordered_json params = nlohmann::ordered_json::parse(
          t.parameters_schema.empty() ? std::string(R"({"type": "object"})") : t.parameters_schema);
      nlohmann::ordered_json schema = {
          {"type", "object"},
          {"properties", {{"name", {{"const", t.name}}}, {"arguments", params}}},
          {"required", {"name", "arguments"}},
      };
      // The model's own spacing: {"name": "f", "arguments": {...}}.
      calls.push_back(xgrammar::Grammar::FromJSONSchema(schema.dump(), /*any_whitespace=*/false, std::nullopt,
                                                        std::make_pair(std::string(", "), std::string(": "))));
    }
    const xgrammar::Grammar body = calls.size() == 1 ? calls[0] : xgrammar::Grammar::Union(calls);
    return c.CompileGrammar(xgrammar::Grammar::Concat({xgrammar::Grammar::FromEBNF(R"(root ::= "<tool_call>\n")"), body,
                                                       xgrammar::Grammar::FromEBNF(R"(root ::= "\n</tool_call>")")}));
  });
}

struct Matcher::Impl {
  Impl(std::shared_ptr<const Constraint> c, std::optional<int32_t> after)
      : constraint(std::move(c)),
        matcher(constraint->compiled, std::nullopt, /*terminate_without_stop_token=*/constraint->ends_without_stop_token),
        start_after(after) {}
  std::shared_ptr<const Constraint> constraint;
  xgrammar::GrammarMatcher matcher;
  std::optional<int32_t> start_after;  // reset once seen
  int64_t vocab() const { return constraint->compiled.GetTokenizerInfo().GetVocabSize(); }
};

Matcher::Matcher(std::shared_ptr<const Constraint> constraint, std::optional<int32_t> start_after)
    : impl_(std::make_unique<Impl>(std::move(constraint), start_after)) {}
Matcher::~Matcher() = default;
Matcher::Matcher(Matcher&&) noexcept = default;

bool Matcher::active() const { return !impl_->start_after && !impl_->matcher.IsTerminated(); }

void Matcher::fill_mask(uint32_t* words) {
  LOOM_CHECK(active(), "fill_mask on an inactive matcher");
  int64_t shape[1] = {mask_words(impl_->vocab())};
  DLTensor t = mask_tensor(words, shape, 1);
  impl_->matcher.FillNextTokenBitmask(&t);
}

bool Matcher::accept(int32_t token) {
  if (impl_->start_after) {
    if (token == *impl_->start_after) impl_->start_after.reset();
    return true;
  }
  return impl_->matcher.AcceptToken(token);
}

bool Matcher::terminated() const { return !impl_->start_after && impl_->matcher.IsTerminated(); }

void fill_masks(const std::vector<Matcher*>& matchers, uint32_t* masks, int64_t vocab) {
  if (matchers.empty()) return;
  const int64_t words = mask_words(vocab);
  if (matchers.size() < 4) {  // threads cost more than they save
    for (size_t i = 0; i < matchers.size(); ++i) matchers[i]->fill_mask(masks + static_cast<int64_t>(i) * words);
    return;
  }
  std::vector<xgrammar::GrammarMatcher> batch;  // handles: copies share the matchers' state
  batch.reserve(matchers.size());
  for (Matcher* m : matchers) {
    LOOM_CHECK(m->active(), "fill_masks on an inactive matcher");
    batch.push_back(m->impl().matcher);
  }
  thread_local xgrammar::BatchGrammarMatcher filler(static_cast<int32_t>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u)));
  int64_t shape[2] = {static_cast<int64_t>(matchers.size()), words};
  DLTensor t = mask_tensor(masks, shape, 2);
  filler.BatchFillNextTokenBitmask(&batch, &t);
}

}  // namespace loom::grammar
