#include "loom/tokenizer/jinja_parser.h"

#include <set>

#include "loom/tensor/error.h"
#include "loom/tokenizer/jinja_lexer.h"

namespace loom::tokenizer::jinja {
namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Template run() {
    Template tpl;
    std::string end_tag;
    tpl.body = parse_body({}, end_tag);
    return tpl;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  const Token& next() { return t_[p_ < t_.size() - 1 ? p_++ : p_]; }
  bool at_op(const char* op) const { return peek().type == TokenType::Op && peek().text == op; }
  bool at_name(const char* name) const { return peek().type == TokenType::Name && peek().text == name; }
  bool accept_op(const char* op) {
    if (!at_op(op)) return false;
    ++p_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!at_name(name)) return false;
    ++p_;
    return true;
  }
  [[noreturn]] void fail(const std::string& what, int line = -1) const {
    throw Error(str("chat template line ", line < 0 ? peek().line : line, ": ", what));
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::End: return "end of template";
      case TokenType::VarEnd: return "'}}'";
      case TokenType::BlockEnd: return "'%}'";
      case TokenType::String: return "string '" + t.text + "'";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(str("expected '", op, "', found ", describe(peek())));
  }
  std::string expect_name() {
    if (peek().type != TokenType::Name) fail(str("expected a name, found ", describe(peek())));
    return next().text;
  }
  void expect_block_end() {
    if (peek().type != TokenType::BlockEnd) fail(str("expected '%}', found ", describe(peek())));
    ++p_;
  }
  NodePtr node(NodeKind kind, int line) {
    auto n = std::make_shared<Node>();
    n->kind = kind;
    n->line = line;
    return n;
  }

  // Statements until a block tag named in `ends` (consumed up to its name; returned in end_tag).
  Body parse_body(const std::set<std::string>& ends, std::string& end_tag) {
    Body body;
    while (true) {
      const Token& tok = peek();
      if (tok.type == TokenType::End) {
        if (!ends.empty()) {
          std::string closer = *ends.begin();
          for (const auto& e : ends)
            if (e.rfind("end", 0) == 0) closer = e;
          fail(str("missing {% ", closer, " %} before the end of the template"));
        }
        return body;
      }
      if (tok.type == TokenType::Text) {
        auto n = node(NodeKind::Text, tok.line);
        n->value = Value::string(tok.text);
        body.push_back(n);
        ++p_;
      } else if (tok.type == TokenType::VarBegin) {
        ++p_;
        auto n = node(NodeKind::Output, tok.line);
        n->args.push_back(parse_expression());
        if (peek().type != TokenType::VarEnd) fail(str("expected '}}', found ", describe(peek())));
        ++p_;
        body.push_back(n);
      } else {  // BlockBegin
        const Token& tag = peek(1);
        if (tag.type != TokenType::Name) fail("expected a tag name after '{%'", tag.line);
        if (ends.count(tag.text)) {
          p_ += 2;
          end_tag = tag.text;
          return body;
        }
        p_ += 2;
        body.push_back(parse_statement(tag.text, tag.line));
      }
    }
  }

  NodePtr parse_statement(const std::string& tag, int line) {
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "break" || tag == "continue") {
      expect_block_end();
      return node(tag == "break" ? NodeKind::Break : NodeKind::Continue, line);
    }
    if (tag == "elif" || tag == "else" || tag.rfind("end", 0) == 0)
      fail(str("unexpected {% ", tag, " %} (no open block it could close)"), line);
    fail(str("unsupported tag '", tag, "'"), line);
  }

  NodePtr parse_if(int line) {
    auto n = node(NodeKind::If, line);
    NodePtr cond = parse_expression();
    expect_block_end();
    while (true) {
      std::string end;
      Body body = parse_body({"elif", "else", "endif"}, end);
      n->branches.emplace_back(cond, std::move(body));
      if (end == "endif") break;
      if (end == "elif") {
        cond = parse_expression();
        expect_block_end();
      } else {
        expect_block_end();
        std::string end2;
        Body else_body = parse_body({"endif"}, end2);
        n->branches.emplace_back(nullptr, std::move(else_body));
        break;
      }
    }
    expect_block_end();
    return n;
  }

  NodePtr parse_for(int line) {
    auto n = node(NodeKind::For, line);
    do n->targets.push_back(expect_name());
    while (accept_op(","));
    if (!accept_name("in")) fail(str("expected 'in' in for loop, found ", describe(peek())));
    n->args.push_back(parse_conditional(/*allow_if=*/false));
    n->args.push_back(accept_name("if") ? parse_expression() : nullptr);
    if (accept_name("recursive")) fail("unsupported construct 'recursive' for loop", line);
    expect_block_end();
    std::string end;
    n->body = parse_body({"else", "endfor"}, end);
    if (end == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"}, end);
    }
    expect_block_end();
    return n;
  }

  NodePtr parse_set(int line) {
    const std::string first = expect_name();
    if (accept_op(".")) {  // {% set ns.attr = value %}
      auto n = node(NodeKind::Set, line);
      auto target = node(NodeKind::Variable, line);
      target->name = first;
      auto attr = node(NodeKind::Attribute, line);
      attr->args.push_back(target);
      attr->name = expect_name();
      expect_op("=");
      n->args.push_back(parse_expression());
      n->args.push_back(attr);
      expect_block_end();
      return n;
    }
    std::vector<std::string> targets{first};
    while (accept_op(",")) targets.push_back(expect_name());
    if (peek().type == TokenType::BlockEnd && targets.size() == 1) {  // {% set x %}...{% endset %}
      ++p_;
      auto n = node(NodeKind::SetBlock, line);
      n->targets = targets;
      std::string end;
      n->body = parse_body({"endset"}, end);
      expect_block_end();
      return n;
    }
    expect_op("=");
    auto n = node(NodeKind::Set, line);
    n->targets = targets;
    n->args.push_back(parse_expression());
    expect_block_end();
    return n;
  }

  NodePtr parse_macro(int line) {
    auto n = node(NodeKind::Macro, line);
    n->name = expect_name();
    expect_op("(");
    while (!accept_op(")")) {
      if (!n->targets.empty()) expect_op(",");
      n->targets.push_back(expect_name());
      n->args.push_back(accept_op("=") ? parse_expression() : nullptr);
    }
    expect_block_end();
    std::string end;
    n->body = parse_body({"endmacro"}, end);
    expect_block_end();
    return n;
  }

  // expression := conditional, or an unparenthesized tuple "a, b" (a list value)
  NodePtr parse_expression() {
    NodePtr first = parse_conditional(true);
    if (!at_op(",")) return first;
    auto list = node(NodeKind::ListLiteral, first->line);
    list->args.push_back(first);
    while (accept_op(",")) {
      if (peek().type == TokenType::BlockEnd || peek().type == TokenType::VarEnd) break;
      list->args.push_back(parse_conditional(true));
    }
    return list;
  }

  NodePtr parse_conditional(bool allow_if) {
    NodePtr value = parse_or();
    while (allow_if && at_name("if")) {
      auto n = node(NodeKind::Conditional, peek().line);
      ++p_;
      n->args.push_back(parse_or());
      n->args.push_back(value);
      n->args.push_back(accept_name("else") ? parse_conditional(true) : nullptr);
      value = n;
    }
    return value;
  }

  NodePtr binary(const std::string& op, NodePtr a, NodePtr b, int line) {
    auto n = node(NodeKind::Binary, line);
    n->name = op;
    n->args = {std::move(a), std::move(b)};
    return n;
  }

  NodePtr parse_or() {
    NodePtr left = parse_and();
    while (at_name("or")) {
      const int line = next().line;
      left = binary("or", left, parse_and(), line);
    }
    return left;
  }
  NodePtr parse_and() {
    NodePtr left = parse_not();
    while (at_name("and")) {
      const int line = next().line;
      left = binary("and", left, parse_not(), line);
    }
    return left;
  }
  NodePtr parse_not() {
    if (at_name("not")) {
      auto n = node(NodeKind::Unary, next().line);
      n->name = "not";
      n->args.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  NodePtr parse_compare() {
    NodePtr left = parse_concat();
    while (true) {
      const int line = peek().line;
      std::string op;
      if (peek().type == TokenType::Op &&
          (at_op("==") || at_op("!=") || at_op("<") || at_op(">") || at_op("<=") || at_op(">="))) {
        op = next().text;
      } else if (at_name("in")) {
        ++p_;
        op = "in";
      } else if (at_name("not") && peek(1).type == TokenType::Name && peek(1).text == "in") {
        p_ += 2;
        op = "not in";
      } else {
        return left;
      }
      left = binary(op, left, parse_concat(), line);
    }
  }
  NodePtr parse_concat() {
    NodePtr left = parse_additive();
    while (at_op("~")) {
      const int line = next().line;
      left = binary("~", left, parse_additive(), line);
    }
    return left;
  }
  NodePtr parse_additive() {
    NodePtr left = parse_multiplicative();
    while (at_op("+") || at_op("-")) {
      const Token& op = next();
      left = binary(op.text, left, parse_multiplicative(), op.line);
    }
    return left;
  }
  NodePtr parse_multiplicative() {
    NodePtr left = parse_unary();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& op = next();
      left = binary(op.text, left, parse_unary(), op.line);
    }
    return left;
  }
  // Unary minus binds tighter than filters, as in Jinja: `-3|abs` is 3.
  NodePtr parse_unary(bool with_filters = true) {
    NodePtr value;
    if (at_op("-") || at_op("+")) {
      value = node(NodeKind::Unary, peek().line);
      value->name = next().text;
      value->args.push_back(parse_unary(false));
    } else {
      if (at_op("**")) fail("unsupported operator '**'");
      value = parse_postfix(parse_primary());
    }
    return with_filters ? parse_filtered(value) : value;
  }

  // `x | f(args)` and `x is [not] test(args)` bind tighter than arithmetic, as in Jinja.
  NodePtr parse_filtered(NodePtr value) {
    while (true) {
      if (accept_op("|")) {
        auto n = node(NodeKind::Filter, peek().line);
        n->name = expect_name();
        if (!is_known_filter(n->name)) fail(str("unsupported filter '", n->name, "'"), n->line);
        n->args.push_back(value);
        if (accept_op("(")) parse_call_args(*n);
        value = parse_postfix(n);
      } else if (at_name("is")) {
        auto n = node(NodeKind::Test, next().line);
        n->negated = accept_name("not");
        n->name = expect_name();
        if (!is_known_test(n->name)) fail(str("unsupported test '", n->name, "'"), n->line);
        n->args.push_back(value);
        if (accept_op("(")) {
          parse_call_args(*n);
        } else if (peek().type == TokenType::String || peek().type == TokenType::Int ||
                   peek().type == TokenType::Float || (peek().type == TokenType::Name && !at_name("and") &&
                                                       !at_name("or") && !at_name("else") && !at_name("if"))) {
          n->args.push_back(parse_postfix(parse_primary()));  // `x is divisibleby 3`, `x is sameas none`
        }
        value = n;
      } else {
        return value;
      }
    }
  }

  // Arguments after '(' up to ')'; args[0] (callee or operand) is already in place.
  void parse_call_args(Node& n) {
    bool first = true;
    while (!accept_op(")")) {
      if (!first) {
        expect_op(",");
        if (accept_op(")")) break;  // trailing comma
      }
      first = false;
      if (peek().type == TokenType::Name && peek(1).type == TokenType::Op && peek(1).text == "=") {
        std::string key = next().text;
        ++p_;
        n.kwargs.emplace_back(key, parse_conditional(true));
      } else {
        if (!n.kwargs.empty()) fail("positional argument after keyword argument");
        n.args.push_back(parse_conditional(true));
      }
    }
  }

  NodePtr parse_postfix(NodePtr value) {
    while (true) {
      const int line = peek().line;
      if (accept_op(".")) {
        auto n = node(NodeKind::Attribute, line);
        if (peek().type == TokenType::Int) n->name = std::to_string(next().int_value);  // x.0
        else n->name = expect_name();
        n->args.push_back(value);
        value = n;
      } else if (accept_op("[")) {
        NodePtr parts[3];
        int part = 0;
        bool is_slice = false;
        while (!accept_op("]")) {
          if (accept_op(":")) {
            is_slice = true;
            if (++part > 2) fail("too many ':' in slice");
            continue;
          }
          if (parts[part]) fail(str("expected ']' or ':', found ", describe(peek())));
          parts[part] = parse_expression();
        }
        if (is_slice) {
          auto n = node(NodeKind::Slice, line);
          n->args = {value, parts[0], parts[1], parts[2]};
          value = n;
        } else {
          if (!parts[0]) fail("empty subscript []", line);
          auto n = node(NodeKind::Index, line);
          n->args = {value, parts[0]};
          value = n;
        }
      } else if (accept_op("(")) {
        auto n = node(NodeKind::Call, line);
        n->args.push_back(value);
        parse_call_args(*n);
        value = n;
      } else {
        return value;
      }
    }
  }

  NodePtr parse_primary() {
    const Token& tok = peek();
    auto literal = [&](Value v) {
      auto n = node(NodeKind::Literal, tok.line);
      n->value = std::move(v);
      ++p_;
      return n;
    };
    switch (tok.type) {
      case TokenType::String: {
        std::string s = tok.text;
        auto n = literal(Value::none());
        while (peek().type == TokenType::String) s += next().text;  // adjacent literals concatenate
        n->value = Value::string(s);
        return n;
      }
      case TokenType::Int: return literal(Value::integer(tok.int_value));
      case TokenType::Float: return literal(Value::number(tok.float_value));
      case TokenType::Name: {
        const std::string& w = tok.text;
        if (w == "true" || w == "True") return literal(Value::boolean(true));
        if (w == "false" || w == "False") return literal(Value::boolean(false));
        if (w == "none" || w == "None") return literal(Value::none());
        auto n = node(NodeKind::Variable, tok.line);
        n->name = w;
        ++p_;
        return n;
      }
      case TokenType::Op: {
        if (accept_op("(")) {
          if (accept_op(")")) {
            auto n = node(NodeKind::ListLiteral, tok.line);
            return n;
          }
          NodePtr inner = parse_expression();
          expect_op(")");
          return inner;
        }
        if (accept_op("[")) {
          auto n = node(NodeKind::ListLiteral, tok.line);
          while (!accept_op("]")) {
            if (!n->args.empty()) {
              expect_op(",");
              if (accept_op("]")) break;
            }
            n->args.push_back(parse_conditional(true));
          }
          return n;
        }
        if (accept_op("{")) {
          auto n = node(NodeKind::DictLiteral, tok.line);
          while (!accept_op("}")) {
            if (!n->args.empty()) {
              expect_op(",");
              if (accept_op("}")) break;
            }
            n->args.push_back(parse_conditional(true));
            expect_op(":");
            n->args.push_back(parse_conditional(true));
          }
          return n;
        }
        break;
      }
      default: break;
    }
    fail(str("unexpected ", describe(tok), " in expression"));
  }

  std::vector<Token> t_;
  size_t p_ = 0;
};

}  // namespace

Template parse(const std::string& source) { return Parser(lex(source)).run(); }

}  // namespace loom::tokenizer::jinja
