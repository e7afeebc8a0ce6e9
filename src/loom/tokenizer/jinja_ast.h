// Syntax tree of a parsed Jinja template: one node type for expressions and statements.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loom/tokenizer/jinja_value.h"

namespace loom::tokenizer::jinja {

struct Node;
using NodePtr = std::shared_ptr<Node>;
using Body = std::vector<NodePtr>;

enum class NodeKind {
  // expressions
  Literal,    // value
  Variable,   // name
  Attribute,  // args[0].name
  Index,      // args[0][args[1]]
  Slice,      // args[0][args[1]:args[2]:args[3]] (null parts are absent)
  Call,       // args[0](args[1..], kwargs)
  Filter,     // args[0] | name(args[1..], kwargs)
  Test,       // args[0] is [not] name(args[1..])
  Unary,      // name: "not", "-", "+"
  Binary,     // name: operator, args[0] op args[1]
  Conditional,  // args[1] if args[0] else args[2] (args[2] may be null)
  ListLiteral,  // args
  DictLiteral,  // args: key, value, key, value...
  // statements
  Text,      // value
  Output,    // {{ args[0] }}
  If,        // branches (condition, body); condition null for else
  For,       // targets in args[0] [if args[1]]: body, else_body
  Set,       // targets (or attribute target: args[1].name) = args[0]
  SetBlock,  // {% set targets[0] %}body{% endset %}
  Macro,     // name(params with defaults in args): body
  Break,
  Continue,
};

struct Node {
  NodeKind kind;
  int line = 0;
  std::string name;
  Value value;
  std::vector<NodePtr> args;
  std::vector<std::pair<std::string, NodePtr>> kwargs;
  std::vector<std::string> targets;  // loop / set variables, macro parameters
  std::vector<std::pair<NodePtr, Body>> branches;
  Body body, else_body;
  bool negated = false;
};

struct Template {
  Body body;
};

}  // namespace loom::tokenizer::jinja
