// Helpers shared by the Jinja builtins (filters, tests, methods): argument access with Python's
// positional-or-keyword rule, type checks, and Python str semantics on UTF-8 text.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "loom/tokenizer/jinja_builtins.h"

namespace loom::tokenizer::jinja {

[[noreturn]] void fail(const std::string& what);  // throws BuiltinError
// Argument `index` if given positionally, else keyword `name`, else fallback.
const Value& arg(const std::vector<Value>& args, const Kwargs& kwargs, size_t index, const char* name,
                 const Value& fallback);
int64_t to_int(const Value& v, const char* what);
const std::string& need_string(const Value& v, const char* what);
int64_t length(const Value& v);  // Python len(): code points for strings
Value attribute_path(const Value& v, const std::string& path);  // "a.b" as map/selectattr take it
Value items_of(const Value& dict);  // list of (key, value) tuples

// Python str methods on UTF-8 (whitespace is Python's str.isspace set).
bool is_py_space(uint32_t c);
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);
Value py_split(const std::string& s, const Value& sep, int64_t maxsplit);
std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count);
std::string map_case(const std::string& s, bool upper);  // ASCII letters only
std::string title_case(const std::string& s);

}  // namespace loom::tokenizer::jinja
