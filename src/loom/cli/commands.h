// One function per `loom` subcommand, each in its own cmd_*.cc file.
#pragma once
#include "loom/cli/args.h"

namespace loom::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(Args& args);
};

}  // namespace loom::cli
