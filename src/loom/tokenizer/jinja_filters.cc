// Jinja filters (`x | name(args)`), with the semantics of Jinja2 as transformers configures it.
#include <algorithm>
#include <cmath>
#include <set>

#include "loom/tokenizer/jinja_builtin_util.h"
#include "loom/tokenizer/jinja_parser.h"

namespace loom::tokenizer::jinja {
namespace {

const Value kUndefined;

const std::set<std::string>& filter_names() {
  static const std::set<std::string> names = {
      "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "indent",
      "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
      "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson",
      "trim", "unique", "upper", "wordcount"};
  return names;
}

Value select(const Value& x, const std::vector<Value>& args, bool by_attr, bool keep) {
  Array out;
  for (const Value& item : iterate(x)) {
    size_t k = 0;
    Value subject = item;
    if (by_attr) {
      if (args.empty()) fail("selectattr/rejectattr need an attribute name");
      subject = attribute_path(item, need_string(args[0], "attribute name"));
      k = 1;
    }
    bool ok;
    if (k < args.size()) {
      std::vector<Value> test_args(args.begin() + static_cast<std::ptrdiff_t>(k) + 1, args.end());
      ok = apply_test(need_string(args[k], "test name"), subject, test_args);
    } else {
      ok = subject.truthy();
    }
    if (ok == keep) out.push_back(item);
  }
  return Value::array(std::move(out));
}

std::string indent(const std::string& s, const Value& width, bool first, bool blank) {
  const std::string pad = width.is_string() ? width.s : std::string(static_cast<size_t>(to_int(width, "indent width")), ' ');
  std::string out;
  size_t pos = 0;
  bool is_first = true;
  while (pos <= s.size()) {
    size_t nl = s.find('\n', pos);
    const std::string line = s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    if ((!is_first || first) && (blank || !line.empty())) out += pad;
    out += line;
    if (nl == std::string::npos) break;
    out += '\n';
    pos = nl + 1;
    is_first = false;
  }
  return out;
}

}  // namespace

bool is_known_filter(const std::string& name) { return filter_names().count(name) > 0; }

Value apply_filter(const std::string& name, const Value& x, const std::vector<Value>& args, const Kwargs& kwargs) {
  static const Value kNone = Value::none();
  if (name == "length" || name == "count") return Value::integer(length(x));
  if (name == "tojson") {
    const Value& ind = arg(args, kwargs, 0, "indent", kNone);
    const Value& sort = arg(args, kwargs, 1, "sort_keys", kNone);
    return Value::string(to_json(x, ind.is_none() ? -1 : static_cast<int>(to_int(ind, "tojson indent")), sort.truthy()));
  }
  if (name == "trim") return Value::string(py_strip(need_string(x, "trim operand"), arg(args, kwargs, 0, "chars", kNone), true, true));
  if (name == "default" || name == "d") {
    const Value& fallback = arg(args, kwargs, 0, "default_value", Value::string(""));
    const bool boolean = arg(args, kwargs, 1, "boolean", kNone).truthy();
    if (x.is_undefined() || (boolean && !x.truthy())) return fallback;
    return x;
  }
  if (name == "upper") return Value::string(map_case(need_string(x, "upper operand"), true));
  if (name == "lower") return Value::string(map_case(need_string(x, "lower operand"), false));
  if (name == "title") return Value::string(title_case(need_string(x, "title operand")));
  if (name == "capitalize") {
    std::string s = map_case(need_string(x, "capitalize operand"), false);
    if (!s.empty() && static_cast<unsigned char>(s[0]) < 0x80) s[0] = static_cast<char>(std::toupper(s[0]));
    return Value::string(s);
  }
  if (name == "string") return Value::string(to_str(x));
  if (name == "safe" || name == "e" || name == "escape") return x;  // no autoescape in chat templates
  if (name == "int") {
    if (x.is_string()) {
      try {
        return Value::integer(std::stoll(x.s));
      } catch (...) {
        return Value::integer(0);
      }
    }
    return Value::integer(x.is_number() || x.kind == Value::Kind::Bool ? to_int(x, "int") : 0);
  }
  if (name == "float") {
    if (x.is_string()) {
      try {
        return Value::number(std::stod(x.s));
      } catch (...) {
        return Value::number(0);
      }
    }
    return Value::number(x.is_number() || x.kind == Value::Kind::Bool ? x.as_double() : 0.0);
  }
  if (name == "abs") {
    if (x.kind == Value::Kind::Int) return Value::integer(std::llabs(x.i));
    if (x.kind == Value::Kind::Float) return Value::number(std::fabs(x.f));
    fail(str("abs of a ", x.type_name()));
  }
  if (name == "round") {
    const int64_t digits = to_int(arg(args, kwargs, 0, "precision", Value::integer(0)), "round precision");
    const double scale = std::pow(10.0, static_cast<double>(digits));
    return Value::number(std::round(x.as_double() * scale) / scale);
  }
  if (name == "first" || name == "last") {
    Array items = iterate(x);
    if (items.empty()) return Value::undefined();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value::array(iterate(x));
  if (name == "items") return items_of(x);
  if (name == "reverse") {
    if (x.is_string()) return slice(x, kNone, kNone, Value::integer(-1));
    Array items = iterate(x);
    std::reverse(items.begin(), items.end());
    return Value::array(std::move(items));
  }
  if (name == "join") {
    const Value& sep = arg(args, kwargs, 0, "d", Value::string(""));
    const Value& attribute = arg(args, kwargs, 1, "attribute", kNone);
    std::string out;
    bool first = true;
    for (const Value& e : iterate(x)) {
      if (!first) out += to_str(sep);
      first = false;
      out += to_str(attribute.is_string() ? attribute_path(e, attribute.s) : e);
    }
    return Value::string(out);
  }
  if (name == "replace") {
    const auto count = arg(args, kwargs, 2, "count", kNone);
    return Value::string(replace_all(need_string(x, "replace operand"), need_string(arg(args, kwargs, 0, "old", kNone), "replace old"),
                                     to_str(arg(args, kwargs, 1, "new", kNone)),
                                     count.is_none() ? -1 : to_int(count, "replace count")));
  }
  if (name == "indent") {
    return Value::string(indent(need_string(x, "indent operand"), arg(args, kwargs, 0, "width", Value::integer(4)),
                                arg(args, kwargs, 1, "first", kNone).truthy(), arg(args, kwargs, 2, "blank", kNone).truthy()));
  }
  if (name == "wordcount") return Value::integer(static_cast<int64_t>(py_split(need_string(x, "wordcount operand"), kNone, -1).arr->size()));
  if (name == "attr") return get_item(x, arg(args, kwargs, 0, "name", kNone));
  if (name == "map") {
    const Value& attribute = arg(args, kwargs, 99, "attribute", kNone);
    Array out;
    for (const Value& e : iterate(x)) {
      if (attribute.is_string()) {
        Value v = attribute_path(e, attribute.s);
        if (v.is_undefined()) v = arg(args, kwargs, 99, "default", kUndefined);
        out.push_back(v);
      } else if (!args.empty()) {
        std::vector<Value> rest(args.begin() + 1, args.end());
        out.push_back(apply_filter(need_string(args[0], "map filter name"), e, rest, {}));
      } else {
        fail("map needs a filter name or attribute=");
      }
    }
    return Value::array(std::move(out));
  }
  if (name == "select" || name == "reject") return select(x, args, false, name == "select");
  if (name == "selectattr" || name == "rejectattr") return select(x, args, true, name == "selectattr");
  if (name == "sort" || name == "dictsort" || name == "unique" || name == "min" || name == "max" || name == "sum") {
    Array items = name == "dictsort" ? *items_of(x).arr : iterate(x);
    const Value& attribute = arg(args, kwargs, 99, "attribute", kNone);
    auto key = [&](const Value& v) {
      if (name == "dictsort") return (*v.arr)[0];
      return attribute.is_string() ? attribute_path(v, attribute.s) : v;
    };
    if (name == "sum") {
      Value total = arg(args, kwargs, 99, "start", Value::integer(0));
      for (const Value& e : items) {
        const Value k = key(e);
        if (total.kind == Value::Kind::Int && k.kind == Value::Kind::Int) total = Value::integer(total.i + k.i);
        else total = Value::number(total.as_double() + k.as_double());
      }
      return total;
    }
    if (name == "unique") {
      Array out;
      for (const Value& e : items)
        if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return equals(key(o), key(e)); })) out.push_back(e);
      return Value::array(std::move(out));
    }
    std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) { return compare(key(a), key(b)) < 0; });
    if (name == "min" || name == "max") {
      if (items.empty()) return Value::undefined();
      return name == "min" ? items.front() : items.back();
    }
    const bool reverse = arg(args, kwargs, 0, "reverse", kNone).truthy();
    if (reverse) std::reverse(items.begin(), items.end());
    return Value::array(std::move(items));
  }
  fail(str("unsupported filter '", name, "'"));
}

}  // namespace loom::tokenizer::jinja
