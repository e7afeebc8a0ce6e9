#include "loom/tokenizer/jinja_eval.h"

#include <unordered_map>

#include "loom/tokenizer/jinja_builtins.h"

namespace loom::tokenizer::jinja {
namespace {

constexpr int kMaxCallDepth = 200;

class Evaluator {
 public:
  explicit Evaluator(const Object& globals) {
    scopes_.emplace_back();
    for (const auto& [k, v] : globals.items) scopes_.back()[k] = v;
  }

  std::string run(const Body& body) {
    std::string out;
    out_ = &out;
    exec(body);
    return out;
  }

 private:
  enum class Flow { Normal, Break, Continue };
  using Scope = std::unordered_map<std::string, Value>;

  [[noreturn]] static void fail(const Node& n, const std::string& what) {
    throw Error(str("chat template line ", n.line, ": ", what));
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undefined();
  }

  Flow exec(const Body& body) {
    for (const NodePtr& n : body) {
      Flow f = exec(*n);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Node& n) {
    try {
      return exec_node(n);
    } catch (const BuiltinError& e) {
      fail(n, e.what());
    }
  }

  Flow exec_node(const Node& n) {
    switch (n.kind) {
      case NodeKind::Text: *out_ += n.value.s; return Flow::Normal;
      case NodeKind::Output: *out_ += to_str(eval(*n.args[0])); return Flow::Normal;
      case NodeKind::If:
        for (const auto& [cond, body] : n.branches)
          if (!cond || eval(*cond).truthy()) return exec(body);
        return Flow::Normal;
      case NodeKind::For: return exec_for(n);
      case NodeKind::Set: {
        Value v = eval(*n.args[0]);
        if (n.args.size() > 1) {  // ns.attr = v
          const Node& target = *n.args[1];
          Value ns = eval(*target.args[0]);
          if (!ns.is_object() || !ns.obj->is_namespace)
            fail(n, str("cannot set attribute '", target.name, "' on '", target.args[0]->name,
                        "' (only namespace() objects can be changed)"));
          ns.obj->set(target.name, std::move(v));
        } else {
          assign(n, n.targets, v);
        }
        return Flow::Normal;
      }
      case NodeKind::SetBlock: {
        std::string captured;
        std::string* saved = out_;
        out_ = &captured;
        exec(n.body);
        out_ = saved;
        scopes_.back()[n.targets[0]] = Value::string(captured);
        return Flow::Normal;
      }
      case NodeKind::Macro: scopes_.back()[n.name] = make_macro(n); return Flow::Normal;
      case NodeKind::Break: return Flow::Break;
      case NodeKind::Continue: return Flow::Continue;
      default: fail(n, "expression used as a statement");
    }
  }

  void assign(const Node& n, const std::vector<std::string>& targets, const Value& v) {
    if (targets.size() == 1) {
      scopes_.back()[targets[0]] = v;
      return;
    }
    Array parts = iterate(v);
    if (parts.size() != targets.size())
      fail(n, str("cannot unpack ", parts.size(), " values into ", targets.size(), " names"));
    for (size_t k = 0; k < targets.size(); ++k) scopes_.back()[targets[k]] = parts[k];
  }

  Flow exec_for(const Node& n) {
    Array items = iterate(eval(*n.args[0]));
    if (n.args[1]) {  // `for x in xs if cond`: filter first, so loop.* counts kept items
      Array kept;
      for (const Value& item : items) {
        scopes_.emplace_back();
        assign(n, n.targets, item);
        const bool keep = eval(*n.args[1]).truthy();
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items.swap(kept);
    }
    if (items.empty()) return exec_scoped(n.else_body);
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < len; ++k) {
      Value loop = Value::object();
      auto& o = *loop.obj;
      o.set("index0", Value::integer(k));
      o.set("index", Value::integer(k + 1));
      o.set("revindex0", Value::integer(len - k - 1));
      o.set("revindex", Value::integer(len - k));
      o.set("first", Value::boolean(k == 0));
      o.set("last", Value::boolean(k == len - 1));
      o.set("length", Value::integer(len));
      o.set("previtem", k > 0 ? items[static_cast<size_t>(k - 1)] : Value::undefined());
      o.set("nextitem", k + 1 < len ? items[static_cast<size_t>(k + 1)] : Value::undefined());
      scopes_.emplace_back();
      scopes_.back()["loop"] = loop;
      assign(n, n.targets, items[static_cast<size_t>(k)]);
      Flow f = exec(n.body);
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  Flow exec_scoped(const Body& body) {
    scopes_.emplace_back();
    Flow f = exec(body);
    scopes_.pop_back();
    return f;
  }

  Value make_macro(const Node& n) {
    const Node* def = &n;
    return Value::function([this, def](const std::vector<Value>& args, const Kwargs& kwargs) {
      if (++depth_ > kMaxCallDepth) fail(*def, "macro recursion too deep");
      if (args.size() > def->targets.size()) fail(*def, str("macro '", def->name, "' takes ", def->targets.size(), " arguments"));
      Scope scope;
      for (size_t k = 0; k < def->targets.size(); ++k) {
        Value v = k < args.size() ? args[k] : def->args[k] ? eval(*def->args[k]) : Value::undefined();
        for (const auto& [key, x] : kwargs)
          if (key == def->targets[k]) v = x;
        scope[def->targets[k]] = v;
      }
      std::string captured;
      std::string* saved = out_;
      out_ = &captured;
      scopes_.push_back(std::move(scope));
      exec(def->body);
      scopes_.pop_back();
      out_ = saved;
      --depth_;
      return Value::string(captured);
    });
  }

  Value eval(const Node& n) {
    try {
      return eval_node(n);
    } catch (const BuiltinError& e) {
      fail(n, e.what());
    }
  }

  std::vector<Value> eval_args(const Node& n, size_t from) {
    std::vector<Value> out;
    for (size_t k = from; k < n.args.size(); ++k) out.push_back(eval(*n.args[k]));
    return out;
  }
  Kwargs eval_kwargs(const Node& n) {
    Kwargs out;
    for (const auto& [k, v] : n.kwargs) out.emplace_back(k, eval(*v));
    return out;
  }

  Value eval_node(const Node& n) {
    switch (n.kind) {
      case NodeKind::Literal: return n.value;
      case NodeKind::Variable: return lookup(n.name);
      case NodeKind::Attribute: return get_item(eval(*n.args[0]), Value::string(n.name));
      case NodeKind::Index: return get_item(eval(*n.args[0]), eval(*n.args[1]));
      case NodeKind::Slice: {
        auto part = [&](size_t k) { return n.args[k] ? eval(*n.args[k]) : Value::none(); };
        return slice(eval(*n.args[0]), part(1), part(2), part(3));
      }
      case NodeKind::Call: return eval_call(n);
      case NodeKind::Filter: return apply_filter(n.name, eval(*n.args[0]), eval_args(n, 1), eval_kwargs(n));
      case NodeKind::Test: {
        const bool r = apply_test(n.name, eval(*n.args[0]), eval_args(n, 1));
        return Value::boolean(r != n.negated);
      }
      case NodeKind::Unary: {
        Value v = eval(*n.args[0]);
        if (n.name == "not") return Value::boolean(!v.truthy());
        if (v.kind == Value::Kind::Int) return Value::integer(n.name == "-" ? -v.i : v.i);
        if (v.kind == Value::Kind::Float) return Value::number(n.name == "-" ? -v.f : v.f);
        fail(n, str("bad operand type for unary ", n.name, ": ", v.type_name()));
      }
      case NodeKind::Binary: return eval_binary(n);
      case NodeKind::Conditional:
        if (eval(*n.args[0]).truthy()) return eval(*n.args[1]);
        return n.args[2] ? eval(*n.args[2]) : Value::undefined();
      case NodeKind::ListLiteral: return Value::array(eval_args(n, 0));
      case NodeKind::DictLiteral: {
        Value d = Value::object();
        for (size_t k = 0; k + 1 < n.args.size(); k += 2) {
          Value key = eval(*n.args[k]);
          if (!key.is_string()) fail(n, str("dict keys must be strings, got ", key.type_name()));
          d.obj->set(key.s, eval(*n.args[k + 1]));
        }
        return d;
      }
      default: fail(n, "statement used as an expression");
    }
  }

  Value eval_call(const Node& n) {
    const Node& callee = *n.args[0];
    std::vector<Value> args = eval_args(n, 1);
    Kwargs kwargs = eval_kwargs(n);
    if (callee.kind == NodeKind::Attribute) {
      Value obj = eval(*callee.args[0]);
      if (obj.is_object()) {
        const Value* member = obj.obj->find(callee.name);
        if (member && member->kind == Value::Kind::Function) return (*member->fn)(args, kwargs);
      }
      return call_method(obj, callee.name, args, kwargs);
    }
    Value fn = eval(callee);
    if (fn.kind != Value::Kind::Function) {
      if (callee.kind == NodeKind::Variable) fail(n, str("unknown function '", callee.name, "'"));
      fail(n, str("a ", fn.type_name(), " is not callable"));
    }
    return (*fn.fn)(args, kwargs);
  }

  Value eval_binary(const Node& n) {
    const std::string& op = n.name;
    if (op == "and") {
      Value a = eval(*n.args[0]);
      return a.truthy() ? eval(*n.args[1]) : a;
    }
    if (op == "or") {
      Value a = eval(*n.args[0]);
      return a.truthy() ? a : eval(*n.args[1]);
    }
    Value a = eval(*n.args[0]), b = eval(*n.args[1]);
    if (op == "==") return Value::boolean(equals(a, b));
    if (op == "!=") return Value::boolean(!equals(a, b));
    if (op == "<") return Value::boolean(compare(a, b) < 0);
    if (op == ">") return Value::boolean(compare(a, b) > 0);
    if (op == "<=") return Value::boolean(compare(a, b) <= 0);
    if (op == ">=") return Value::boolean(compare(a, b) >= 0);
    if (op == "in" || op == "not in") {
      if (!b.is_string() && !b.is_array() && !b.is_object() && !b.is_undefined() && !b.is_none())
        fail(n, str("argument of type ", b.type_name(), " is not iterable"));
      if (b.is_string() && !a.is_string()) fail(n, str("'in <string>' requires a string, got ", a.type_name()));
      return Value::boolean(apply_test("in", a, {b}) == (op == "in"));
    }
    if (op == "~") return Value::string(to_str(a) + to_str(b));
    if (op == "+") {
      if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
      if (a.is_array() && b.is_array()) {
        Array out = *a.arr;
        out.insert(out.end(), b.arr->begin(), b.arr->end());
        return Value::array(std::move(out));
      }
    }
    if (op == "*" && (a.is_string() || a.is_array()) && b.kind == Value::Kind::Int) {
      if (a.is_string()) {
        std::string out;
        for (int64_t k = 0; k < b.i; ++k) out += a.s;
        return Value::string(out);
      }
      Array out;
      for (int64_t k = 0; k < b.i; ++k) out.insert(out.end(), a.arr->begin(), a.arr->end());
      return Value::array(std::move(out));
    }
    const bool an = a.is_number() || a.kind == Value::Kind::Bool, bn = b.is_number() || b.kind == Value::Kind::Bool;
    if (!an || !bn) fail(n, str("unsupported operand types for ", op, ": ", a.type_name(), " and ", b.type_name()));
    const bool ints = a.kind != Value::Kind::Float && b.kind != Value::Kind::Float;
    const int64_t x = a.kind == Value::Kind::Bool ? a.b : a.i, y = b.kind == Value::Kind::Bool ? b.b : b.i;
    if (op == "/") {
      if (b.as_double() == 0) fail(n, "division by zero");
      return Value::number(a.as_double() / b.as_double());
    }
    if (ints) {
      if (op == "+") return Value::integer(x + y);
      if (op == "-") return Value::integer(x - y);
      if (op == "*") return Value::integer(x * y);
      if (y == 0) fail(n, "division by zero");
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {  // Python floors
        --q;
        r += y;
      }
      if (op == "//") return Value::integer(q);
      if (op == "%") return Value::integer(r);
    } else {
      const double dx = a.as_double(), dy = b.as_double();
      if (op == "+") return Value::number(dx + dy);
      if (op == "-") return Value::number(dx - dy);
      if (op == "*") return Value::number(dx * dy);
      if (dy == 0) fail(n, "division by zero");
      const double q = std::floor(dx / dy);
      if (op == "//") return Value::number(q);
      if (op == "%") return Value::number(dx - q * dy);
    }
    fail(n, str("unsupported operator ", op));
  }

  std::vector<Scope> scopes_;
  std::string* out_ = nullptr;
  int depth_ = 0;
};

}  // namespace

std::string render(const Template& tpl, const Object& globals) { return Evaluator(globals).run(tpl.body); }

}  // namespace loom::tokenizer::jinja
