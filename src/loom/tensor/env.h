// The environment switches (LOOM_PDL=0, LOOM_ATTENTION=native, ...): A/B runs and escape hatches.
#pragma once
#include <cstdlib>
#include <cstring>

namespace loom {

// Whether environment variable `name` is set to exactly `value`.
inline bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

}  // namespace loom
