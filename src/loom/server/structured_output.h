// The grammar a request's output must follow, from its body: OpenAI's `response_format`
// ({"type": "json_object"} or {"type": "json_schema", "json_schema": {"schema": ...}}), the
// `regex` and `ebnf` extensions (SGLang's field names), or a forced tool call (tool_choice
// "required" or a named function). At most one of them; a bad one is a 400 naming the field.
#pragma once
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/grammar/constraint.h"

namespace loom::server {

// Null when the request constrains nothing. `forced_tools`: the tools a forced tool call may name
// (empty unless tool_choice forces one).
std::shared_ptr<const grammar::Constraint> request_constraint(const nlohmann::ordered_json& body,
                                                              const std::vector<grammar::ToolSpec>& forced_tools,
                                                              grammar::Compiler& compiler);

}  // namespace loom::server
