// Methods of str, dict and list values callable from templates (`s.startswith(...)`, `d.items()`).
#include <algorithm>
#include <cctype>

#include "loom/tokenizer/jinja_builtin_util.h"

namespace loom::tokenizer::jinja {

Value call_method(const Value& obj, const std::string& name, const std::vector<Value>& args, const Kwargs& kwargs) {
  static const Value kNone = Value::none();
  if (obj.is_string()) {
    const std::string& s = obj.s;
    if (name == "startswith" || name == "endswith") {
      const Value& p = arg(args, kwargs, 0, "prefix", kNone);
      std::vector<std::string> options;
      if (p.is_array()) {
        for (const Value& e : *p.arr) options.push_back(need_string(e, "startswith/endswith argument"));
      } else {
        options.push_back(need_string(p, "startswith/endswith argument"));
      }
      for (const auto& o : options) {
        if (name == "startswith" ? s.rfind(o, 0) == 0
                                 : (s.size() >= o.size() && s.compare(s.size() - o.size(), o.size(), o) == 0))
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (name == "strip") return Value::string(py_strip(s, arg(args, kwargs, 0, "chars", kNone), true, true));
    if (name == "lstrip") return Value::string(py_strip(s, arg(args, kwargs, 0, "chars", kNone), true, false));
    if (name == "rstrip") return Value::string(py_strip(s, arg(args, kwargs, 0, "chars", kNone), false, true));
    if (name == "split") {
      const Value& m = arg(args, kwargs, 1, "maxsplit", kNone);
      return py_split(s, arg(args, kwargs, 0, "sep", kNone), m.is_none() ? -1 : to_int(m, "maxsplit"));
    }
    if (name == "splitlines") {
      Array out;
      size_t pos = 0;
      while (pos < s.size()) {
        size_t nl = s.find('\n', pos);
        if (nl == std::string::npos) nl = s.size();
        std::string line = s.substr(pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        out.push_back(Value::string(line));
        pos = nl + 1;
      }
      return Value::array(std::move(out));
    }
    if (name == "upper") return Value::string(map_case(s, true));
    if (name == "lower") return Value::string(map_case(s, false));
    if (name == "title") return Value::string(title_case(s));
    if (name == "capitalize") return apply_filter("capitalize", obj, {}, {});
    if (name == "replace") {
      const Value& count = arg(args, kwargs, 2, "count", kNone);
      return Value::string(replace_all(s, need_string(arg(args, kwargs, 0, "old", kNone), "replace old"),
                                       need_string(arg(args, kwargs, 1, "new", kNone), "replace new"),
                                       count.is_none() ? -1 : to_int(count, "replace count")));
    }
    if (name == "find" || name == "rfind" || name == "count" || name == "index") {
      const std::string& needle = need_string(arg(args, kwargs, 0, "sub", kNone), "search string");
      if (name == "count") {
        if (needle.empty()) return Value::integer(length(obj) + 1);
        int64_t n = 0;
        for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size())) ++n;
        return Value::integer(n);
      }
      const size_t byte = name == "rfind" ? s.rfind(needle) : s.find(needle);
      if (byte == std::string::npos) {
        if (name == "index") fail("substring not found");
        return Value::integer(-1);
      }
      return Value::integer(static_cast<int64_t>(char_boundaries(s.substr(0, byte)).size()) - 1);
    }
    if (name == "join") {
      std::string out;
      bool first = true;
      for (const Value& e : iterate(arg(args, kwargs, 0, "iterable", kNone))) {
        if (!first) out += s;
        first = false;
        out += need_string(e, "join item");
      }
      return Value::string(out);
    }
    auto all_chars = [&](auto pred) {
      if (s.empty()) return Value::boolean(false);
      for (char c : s)
        if (!pred(static_cast<unsigned char>(c))) return Value::boolean(false);
      return Value::boolean(true);
    };
    if (name == "isdigit") return all_chars([](unsigned char c) { return std::isdigit(c) != 0; });
    if (name == "isalpha") return all_chars([](unsigned char c) { return std::isalpha(c) != 0; });
    if (name == "isalnum") return all_chars([](unsigned char c) { return std::isalnum(c) != 0; });
    if (name == "isspace") return all_chars([](unsigned char c) { return std::isspace(c) != 0; });
    if (name == "islower") return Value::boolean(map_case(s, false) == s && map_case(s, true) != s);
    if (name == "isupper") return Value::boolean(map_case(s, true) == s && map_case(s, false) != s);
  } else if (obj.is_object()) {
    if (name == "items") return items_of(obj);
    if (name == "keys") return Value::array(iterate(obj));
    if (name == "values") {
      Array out;
      for (const auto& kv : obj.obj->items) out.push_back(kv.second);
      return Value::array(std::move(out));
    }
    if (name == "get") {
      const Value v = get_item(obj, arg(args, kwargs, 0, "key", kNone));
      return v.is_undefined() ? arg(args, kwargs, 1, "default", kNone) : v;
    }
  } else if (obj.is_array()) {
    if (name == "index" || name == "count") {
      const Value& needle = arg(args, kwargs, 0, "value", kNone);
      int64_t n = 0;
      for (size_t k = 0; k < obj.arr->size(); ++k) {
        if (!equals((*obj.arr)[k], needle)) continue;
        if (name == "index") return Value::integer(static_cast<int64_t>(k));
        ++n;
      }
      if (name == "index") fail("value is not in list");
      return Value::integer(n);
    }
  }
  fail(str("unsupported method '", name, "' on ", obj.type_name()));
}

}  // namespace loom::tokenizer::jinja
