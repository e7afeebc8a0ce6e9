// Jinja parser: tokens to a syntax tree. Tags, filters and tests outside the supported subset are
// rejected here, with the construct's name and line, so a template fails when it is loaded.
#pragma once
#include <string>

#include "loom/tokenizer/jinja_ast.h"

namespace loom::tokenizer::jinja {

Template parse(const std::string& source);

// Names the evaluator implements (the parser checks filters and tests against them).
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);

}  // namespace loom::tokenizer::jinja
