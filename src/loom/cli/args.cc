#include "loom/cli/args.h"

#include <cerrno>
#include <cstdlib>

#include "loom/tensor/error.h"

namespace loom::cli {

Args::Args(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      value = argv[++i];
    }
    if (values_.count(name)) throw InvalidArgument(loom::str("--", name, " given more than once"));
    values_[name] = value;
  }
}

bool Args::has(const std::string& name) const { return values_.count(name) > 0; }

std::optional<std::string> Args::get(std::initializer_list<std::string> names) {
  std::optional<std::string> out;
  for (const auto& n : names) {
    auto it = values_.find(n);
    if (it == values_.end()) continue;
    used_.insert(n);
    if (!out) out = it->second;
  }
  return out;
}

std::string Args::string(const std::string& name, const std::string& fallback) {
  auto v = get({name});
  if (!v) return fallback;
  if (v->empty()) throw InvalidArgument(loom::str("--", name, " needs a value"));
  return *v;
}

std::string Args::required(const std::string& name) {
  auto v = get({name});
  if (!v || v->empty()) throw InvalidArgument(loom::str("--", name, " is required"));
  return *v;
}

int64_t Args::integer(std::initializer_list<std::string> names, int64_t fallback, int64_t lo,
                      int64_t hi) {
  auto v = get(names);
  if (!v) return fallback;
  const std::string& name = *names.begin();
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno == ERANGE)
    throw InvalidArgument(loom::str("--", name, ": '", *v, "' is not an integer"));
  if (x < lo || x > hi)
    throw InvalidArgument(loom::str("--", name, ": ", x, " is out of range [", lo, ", ", hi, "]"));
  return x;
}

double Args::number(const std::string& name, double fallback) {
  auto v = get({name});
  if (!v) return fallback;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0')
    throw InvalidArgument(loom::str("--", name, ": '", *v, "' is not a number"));
  return x;
}

bool Args::flag(const std::string& name) {
  auto v = get({name});
  if (!v) return false;
  if (v->empty() || *v == "true" || *v == "1") return true;
  if (*v == "false" || *v == "0") return false;
  throw InvalidArgument(loom::str("--", name, ": '", *v, "' is not a boolean (allowed: true, false)"));
}

std::vector<int64_t> Args::int_list(const std::string& name) {
  std::string s = required(name);
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    errno = 0;
    char* end = nullptr;
    long long x = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno == ERANGE)
      throw InvalidArgument(loom::str("--", name, ": '", item, "' is not an integer (expected a comma-separated list like 1,2,3)"));
    out.push_back(x);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

void Args::finish() const {
  std::string unknown;
  for (const auto& [k, v] : values_)
    if (!used_.count(k)) unknown += (unknown.empty() ? "--" : ", --") + k;
  if (!unknown.empty()) throw InvalidArgument(loom::str("unknown flag(s): ", unknown));
  if (!positional_.empty())
    throw InvalidArgument(loom::str("unexpected argument '", positional_.front(), "'"));
}

}  // namespace loom::cli
