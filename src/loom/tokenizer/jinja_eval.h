// Jinja evaluator: renders a parsed template against global variables, with Jinja's scoping
// (a for loop body is its own scope; namespace() objects carry state out of loops).
#pragma once
#include <string>

#include "loom/tokenizer/jinja_ast.h"

namespace loom::tokenizer::jinja {

// Throws loom::Error with the template line for evaluation errors; raise_exception in the
// template throws loom::InvalidArgument.
std::string render(const Template& tpl, const Object& globals);

}  // namespace loom::tokenizer::jinja
