// Errors are exceptions that carry their context; the CLI and server turn them into one line / a 4xx.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace loom {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input (a flag, a request field): the CLI exits 2 and the server answers 400.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace loom

#define LOOM_CHECK(cond, ...)                                      \
  do {                                                             \
    if (!(cond)) throw ::loom::Error(::loom::str(__VA_ARGS__));    \
  } while (0)

#define LOOM_CHECK_ARG(cond, ...)                                           \
  do {                                                                      \
    if (!(cond)) throw ::loom::InvalidArgument(::loom::str(__VA_ARGS__));   \
  } while (0)
