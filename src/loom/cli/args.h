// Command-line flags: `--name value`, `--name=value` and bare boolean `--name`.
// Every flag a command reads is marked used; finish() rejects the rest by name.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace loom::cli {

class Args {
 public:
  Args(int argc, char** argv, int first);  // argv[first..] are the flags

  bool has(const std::string& name) const;
  // The first of `names` present wins (aliases such as {"tp-size", "tp"}).
  std::optional<std::string> get(std::initializer_list<std::string> names);
  std::string string(const std::string& name, const std::string& fallback);
  std::string required(const std::string& name);
  int64_t integer(std::initializer_list<std::string> names, int64_t fallback, int64_t min_value,
                  int64_t max_value);
  double number(const std::string& name, double fallback);
  bool flag(const std::string& name);  // bare `--name`, or `--name true|false`
  std::vector<int64_t> int_list(const std::string& name);  // "1,2,3"
  std::vector<std::string> positional() const { return positional_; }
  // Removes and returns the first positional argument (a subcommand such as `bench latency`).
  std::optional<std::string> take_positional() {
    if (positional_.empty()) return std::nullopt;
    std::string p = positional_.front();
    positional_.erase(positional_.begin());
    return p;
  }

  // Throws InvalidArgument naming every flag that no getter asked for.
  void finish() const;

 private:
  std::map<std::string, std::string> values_;  // bare flags hold ""
  std::vector<std::string> positional_;
  std::set<std::string> used_;
};

}  // namespace loom::cli
