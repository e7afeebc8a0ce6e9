// Values of the Jinja subset used by chat templates, with Python semantics: truthiness, equality,
// ordering, str() / repr() output and json.dumps-style tojson. Arrays and objects are shared by
// reference, as in Python; objects keep insertion order.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::tokenizer::jinja {

struct Value;
struct Object;
using Array = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(const std::vector<Value>& args, const Kwargs& kwargs)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, Array, Object, Function };
  Kind kind = Kind::Undefined;
  bool b = false;
  bool tuple = false;  // an Array that prints as a Python tuple (dict items)
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<Array> arr;
  std::shared_ptr<Object> obj;
  std::shared_ptr<Function> fn;

  static Value undefined() { return {}; }
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value string(std::string v);
  static Value array(Array items = {});
  static Value tuple_of(Array items);
  static Value object();
  static Value function(Function fn);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_object() const { return kind == Kind::Object; }
  double as_double() const { return kind == Kind::Int ? static_cast<double>(i) : kind == Kind::Bool ? b : f; }
  bool truthy() const;
  const char* type_name() const;
};

struct Object {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // created by namespace(): the only object `set x.attr = ...` may change
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

Value from_json(const nlohmann::ordered_json& j);

std::string to_str(const Value& v);   // Python str(): what {{ v }} prints
std::string to_repr(const Value& v);  // Python repr()
// Python json.dumps(v, ensure_ascii=False, indent=indent (<0: none), sort_keys=sort_keys).
std::string to_json(const Value& v, int indent = -1, bool sort_keys = false);
std::string float_repr(double d);  // Python repr(float)

bool equals(const Value& a, const Value& b);
// <0, 0, >0; throws loom::Error for values Python cannot order.
int compare(const Value& a, const Value& b);

// Code points of UTF-8 text as byte offsets: boundaries[k] is where code point k starts, and the
// last entry is text.size().
std::vector<size_t> char_boundaries(std::string_view text);

}  // namespace loom::tokenizer::jinja
