#include "loom/tokenizer/jinja_builtins.h"

#include <algorithm>
#include <ctime>
#include <set>

#include "loom/tokenizer/jinja_builtin_util.h"
#include "loom/tokenizer/jinja_parser.h"

namespace loom::tokenizer::jinja {
namespace {

const std::set<std::string>& test_names() {
  static const std::set<std::string> names = {
      "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "float", "ge", "gt",
      "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas",
      "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", ">", "<=", ">="};
  return names;
}

}  // namespace

[[noreturn]] void fail(const std::string& what) { throw BuiltinError(what); }

const Value& arg(const std::vector<Value>& args, const Kwargs& kwargs, size_t index, const char* name,
                 const Value& fallback) {
  if (index < args.size()) return args[index];
  for (const auto& [k, v] : kwargs)
    if (k == name) return v;
  return fallback;
}


int64_t to_int(const Value& v, const char* what) {
  if (v.kind == Value::Kind::Int) return v.i;
  if (v.kind == Value::Kind::Bool) return v.b;
  if (v.kind == Value::Kind::Float) return static_cast<int64_t>(v.f);
  fail(str(what, " must be an integer, got ", v.type_name()));
}

const std::string& need_string(const Value& v, const char* what) {
  if (!v.is_string()) fail(str(what, " must be a string, got ", v.type_name()));
  return v.s;
}

int64_t length(const Value& v) {
  switch (v.kind) {
    case Value::Kind::String: return static_cast<int64_t>(char_boundaries(v.s).size() - 1);
    case Value::Kind::Array: return static_cast<int64_t>(v.arr->size());
    case Value::Kind::Object: return static_cast<int64_t>(v.obj->items.size());
    case Value::Kind::Undefined: return 0;
    default: fail(str("object of type ", v.type_name(), " has no length"));
  }
}

Value attribute_path(const Value& v, const std::string& path) {  // "a.b" as used by map/selectattr
  Value cur = v;
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    cur = get_item(cur, Value::string(path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos)));
    if (dot == std::string::npos) return cur;
    pos = dot + 1;
  }
}

Value items_of(const Value& v) {
  if (!v.is_object()) fail(str("items() needs a dict, got ", v.type_name()));
  Array out;
  for (const auto& [k, x] : v.obj->items) out.push_back(Value::tuple_of({Value::string(k), x}));
  return Value::array(std::move(out));
}

bool is_known_test(const std::string& name) { return test_names().count(name) > 0; }

Array iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Array: return *v.arr;
    case Value::Kind::Object: {
      Array keys;
      for (const auto& kv : v.obj->items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Value::Kind::String: {
      Array chars;
      const auto b = char_boundaries(v.s);
      for (size_t k = 0; k + 1 < b.size(); ++k) chars.push_back(Value::string(v.s.substr(b[k], b[k + 1] - b[k])));
      return chars;
    }
    case Value::Kind::Undefined:
    case Value::Kind::None: return {};  // an absent list iterates as empty, as in Jinja
    default: fail(str("'", v.type_name(), "' object is not iterable"));
  }
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_object()) {
    if (!key.is_string()) return Value::undefined();
    const Value* v = obj.obj->find(key.s);
    return v ? *v : Value::undefined();
  }
  if ((obj.is_array() || obj.is_string()) && key.kind == Value::Kind::Int) {
    if (obj.is_array()) {
      const int64_t n = static_cast<int64_t>(obj.arr->size());
      const int64_t k = key.i < 0 ? key.i + n : key.i;
      return k >= 0 && k < n ? (*obj.arr)[static_cast<size_t>(k)] : Value::undefined();
    }
    const auto b = char_boundaries(obj.s);
    const int64_t n = static_cast<int64_t>(b.size()) - 1;
    const int64_t k = key.i < 0 ? key.i + n : key.i;
    if (k < 0 || k >= n) return Value::undefined();
    return Value::string(obj.s.substr(b[static_cast<size_t>(k)], b[static_cast<size_t>(k) + 1] - b[static_cast<size_t>(k)]));
  }
  return Value::undefined();
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step_v) {
  const bool is_str = obj.is_string();
  if (!is_str && !obj.is_array()) fail(str("cannot slice a ", obj.type_name()));
  std::vector<size_t> b;
  int64_t n;
  if (is_str) {
    b = char_boundaries(obj.s);
    n = static_cast<int64_t>(b.size()) - 1;
  } else {
    n = static_cast<int64_t>(obj.arr->size());
  }
  const bool has = [](const Value& v) { return !v.is_none() && !v.is_undefined(); }(step_v);
  const int64_t step = has ? to_int(step_v, "slice step") : 1;
  if (step == 0) fail("slice step cannot be zero");
  auto bound = [&](const Value& v, int64_t fallback) {
    if (v.is_none() || v.is_undefined()) return fallback;
    int64_t x = to_int(v, "slice index");
    if (x < 0) x += n;
    if (step > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t lo = bound(start, step > 0 ? 0 : n - 1), hi = bound(stop, step > 0 ? n : -1);
  std::string s;
  Array a;
  for (int64_t k = lo; step > 0 ? k < hi : k > hi; k += step) {
    if (is_str) s += obj.s.substr(b[static_cast<size_t>(k)], b[static_cast<size_t>(k) + 1] - b[static_cast<size_t>(k)]);
    else a.push_back((*obj.arr)[static_cast<size_t>(k)]);
  }
  return is_str ? Value::string(std::move(s)) : Value::array(std::move(a));
}

bool apply_test(const std::string& name, const Value& x, const std::vector<Value>& args) {
  auto need_arg = [&]() -> const Value& {
    if (args.empty()) fail(str("test '", name, "' needs an argument"));
    return args[0];
  };
  if (name == "defined") return !x.is_undefined();
  if (name == "undefined") return x.is_undefined();
  if (name == "none") return x.is_none();
  if (name == "string") return x.is_string();
  if (name == "number") return x.is_number();
  if (name == "integer") return x.kind == Value::Kind::Int;
  if (name == "float") return x.kind == Value::Kind::Float;
  if (name == "boolean") return x.kind == Value::Kind::Bool;
  if (name == "true") return x.kind == Value::Kind::Bool && x.b;
  if (name == "false") return x.kind == Value::Kind::Bool && !x.b;
  if (name == "mapping") return x.is_object();
  if (name == "sequence") return x.is_array() || x.is_string() || x.is_object();
  if (name == "iterable") return x.is_array() || x.is_string() || x.is_object();
  if (name == "callable") return x.kind == Value::Kind::Function;
  if (name == "escaped") return false;
  if (name == "lower") return x.is_string() && map_case(x.s, false) == x.s;
  if (name == "upper") return x.is_string() && map_case(x.s, true) == x.s;
  if (name == "even") return to_int(x, "even test operand") % 2 == 0;
  if (name == "odd") return to_int(x, "odd test operand") % 2 != 0;
  if (name == "divisibleby") {
    const int64_t d = to_int(need_arg(), "divisibleby argument");
    if (d == 0) fail("divisibleby 0");
    return to_int(x, "divisibleby operand") % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(x, need_arg());
  if (name == "ne" || name == "!=") return !equals(x, need_arg());
  if (name == "lt" || name == "<") return compare(x, need_arg()) < 0;
  if (name == "le" || name == "<=") return compare(x, need_arg()) <= 0;
  if (name == "gt" || name == ">") return compare(x, need_arg()) > 0;
  if (name == "ge" || name == ">=") return compare(x, need_arg()) >= 0;
  if (name == "sameas") {
    const Value& y = need_arg();
    if (x.kind != y.kind) return false;
    if (x.is_array()) return x.arr == y.arr;
    if (x.is_object()) return x.obj == y.obj;
    return equals(x, y);
  }
  if (name == "in") {
    const Value& c = need_arg();
    if (c.is_string()) return x.is_string() && c.s.find(x.s) != std::string::npos;
    for (const Value& e : iterate(c))
      if (equals(e, x)) return true;
    return false;
  }
  fail(str("unsupported test '", name, "'"));
}

void add_global_functions(Object& globals) {
  globals.set("raise_exception", Value::function([](const std::vector<Value>& args, const Kwargs&) -> Value {
    throw InvalidArgument(str("chat template: ", args.empty() ? std::string("raise_exception called") : to_str(args[0])));
  }));
  globals.set("namespace", Value::function([](const std::vector<Value>& args, const Kwargs& kwargs) {
    Value ns = Value::object();
    ns.obj->is_namespace = true;
    for (const Value& a : args)
      if (a.is_object())
        for (const auto& [k, v] : a.obj->items) ns.obj->set(k, v);
    for (const auto& [k, v] : kwargs) ns.obj->set(k, v);
    return ns;
  }));
  globals.set("dict", Value::function([](const std::vector<Value>& args, const Kwargs& kwargs) {
    Value d = Value::object();
    for (const Value& a : args)
      if (a.is_object())
        for (const auto& [k, v] : a.obj->items) d.obj->set(k, v);
    for (const auto& [k, v] : kwargs) d.obj->set(k, v);
    return d;
  }));
  globals.set("range", Value::function([](const std::vector<Value>& args, const Kwargs&) {
    if (args.empty() || args.size() > 3) fail("range() takes 1 to 3 arguments");
    int64_t start = 0, stop, step = 1;
    if (args.size() == 1) {
      stop = to_int(args[0], "range stop");
    } else {
      start = to_int(args[0], "range start");
      stop = to_int(args[1], "range stop");
      if (args.size() == 3) step = to_int(args[2], "range step");
    }
    if (step == 0) fail("range() step must not be zero");
    Array out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      out.push_back(Value::integer(k));
      if (out.size() > 1000000) fail("range() too long");
    }
    return Value::array(std::move(out));
  }));
  globals.set("strftime_now", Value::function([](const std::vector<Value>& args, const Kwargs&) {
    if (args.empty()) fail("strftime_now() needs a format");
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof(buf), need_string(args[0], "strftime_now format").c_str(), &tm);
    return Value::string(std::string(buf, n));
  }));
}

}  // namespace loom::tokenizer::jinja
