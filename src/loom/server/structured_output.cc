#include "loom/server/structured_output.h"

#include "loom/server/api_error.h"

namespace loom::server {
namespace {

using ojson = nlohmann::ordered_json;

// Hostile grammars must not cost unbounded compile work.
constexpr size_t kMaxGrammarBytes = 64 * 1024;

const ojson* present(const ojson& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::string text_field(const ojson& body, const char* name) {
  const ojson& v = *present(body, name);
  if (!v.is_string()) throw bad_request(name, str("'", name, "' must be a string, got ", v.type_name()));
  std::string s = v.get<std::string>();
  if (s.size() > kMaxGrammarBytes)
    throw bad_request(name, str("'", name, "' may have at most ", kMaxGrammarBytes, " bytes, got ", s.size()));
  return s;
}

template <typename F>
std::shared_ptr<const grammar::Constraint> compiled(const char* param, F&& f) {
  try {
    return f();
  } catch (const grammar::InvalidConstraint& e) {
    throw bad_request(param, e.what());
  }
}

std::shared_ptr<const grammar::Constraint> response_format(const ojson& rf, grammar::Compiler& compiler) {
  const auto type = rf.is_object() ? rf.find("type") : rf.end();
  if (type == rf.end() || !type->is_string())
    throw bad_request("response_format", "'response_format' must be an object with a string 'type'");
  const std::string t = type->get<std::string>();
  if (t == "text") return nullptr;
  if (t == "json_object") return compiled("response_format", [&] { return compiler.json_object(); });
  if (t != "json_schema")
    throw bad_request("response_format",
                      str("'response_format.type' must be 'text', 'json_object' or 'json_schema', got '", t, "'"));
  const ojson* js = present(rf, "json_schema");
  if (!js || !js->is_object())
    throw bad_request("response_format", "'response_format' of type 'json_schema' needs a 'json_schema' object");
  const ojson* schema = present(*js, "schema");
  if (!schema) return compiled("response_format", [&] { return compiler.json_object(); });
  if (!schema->is_object() && !schema->is_boolean())
    throw bad_request("response_format", "'response_format.json_schema.schema' must be a JSON schema object");
  const std::string text = schema->dump();
  if (text.size() > kMaxGrammarBytes)
    throw bad_request("response_format", str("the JSON schema may have at most ", kMaxGrammarBytes, " bytes"));
  return compiled("response_format", [&] { return compiler.json_schema(text); });
}

}  // namespace

std::shared_ptr<const grammar::Constraint> request_constraint(const ojson& body,
                                                              const std::vector<grammar::ToolSpec>& forced_tools,
                                                              grammar::Compiler& compiler) {
  std::vector<const char*> asked;
  const ojson* rf = present(body, "response_format");
  if (rf) asked.push_back("response_format");
  if (present(body, "regex")) asked.push_back("regex");
  if (present(body, "ebnf")) asked.push_back("ebnf");
  if (!forced_tools.empty()) asked.push_back("tool_choice");
  if (asked.size() > 1)
    throw bad_request(asked[1], str("'", asked[0], "' and '", asked[1], "' both constrain the output; use one"));
  if (asked.empty()) return nullptr;
  const std::string what = asked[0];
  if (what == "response_format") return response_format(*rf, compiler);
  if (what == "regex") {
    const std::string pattern = text_field(body, "regex");
    return compiled("regex", [&] { return compiler.regex(pattern); });
  }
  if (what == "ebnf") {
    const std::string g = text_field(body, "ebnf");
    return compiled("ebnf", [&] { return compiler.ebnf(g); });
  }
  return compiled("tools", [&] { return compiler.tool_call(forced_tools); });
}

}  // namespace loom::server
