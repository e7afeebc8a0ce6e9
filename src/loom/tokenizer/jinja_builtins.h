// Jinja filters, tests, methods of str/dict/list, and global functions, with Python semantics.
// Errors are BuiltinError; the evaluator adds the template line.
#pragma once
#include <string>
#include <vector>

#include "loom/tensor/error.h"
#include "loom/tokenizer/jinja_value.h"

namespace loom::tokenizer::jinja {

class BuiltinError : public Error {
 public:
  using Error::Error;
};

Value apply_filter(const std::string& name, const Value& x, const std::vector<Value>& args, const Kwargs& kwargs);
bool apply_test(const std::string& name, const Value& x, const std::vector<Value>& args);
// obj.name(args): str, dict and list methods. Throws BuiltinError naming unknown methods.
Value call_method(const Value& obj, const std::string& name, const std::vector<Value>& args, const Kwargs& kwargs);
// Attribute or item lookup (undefined when absent); index may be negative for lists and strings.
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// Elements a for loop visits: list items, dict keys or string characters.
Array iterate(const Value& v);
// raise_exception, namespace, range, dict, strftime_now.
void add_global_functions(Object& globals);

}  // namespace loom::tokenizer::jinja
