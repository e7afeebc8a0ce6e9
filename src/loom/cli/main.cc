// `loom <command> [flags]`. Errors end in one line on stderr: exit 2 for bad input, 1 otherwise.
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "loom/cli/commands.h"
#include "loom/tensor/error.h"

namespace loom::cli {
// Add a command: declare it here and list it in kCommands.
int cmd_version(Args& args);
int cmd_parallel_layout(Args& args);
int cmd_logits(Args& args);
int cmd_generate(Args& args);
int cmd_tokenize(Args& args);
int cmd_detokenize(Args& args);
int cmd_chat_template(Args& args);
int cmd_serve(Args& args);
int cmd_bench(Args& args);
}  // namespace loom::cli

namespace {

using loom::cli::Command;

const Command kCommands[] = {
    {"version", "print the version", loom::cli::cmd_version},
    {"parallel-layout", "print the rank groups of a parallel configuration", loom::cli::cmd_parallel_layout},
    {"logits", "print the logits of a prompt (JSON)", loom::cli::cmd_logits},
    {"generate", "greedy-decode a continuation of a prompt (JSON)", loom::cli::cmd_generate},
    {"tokenize", "text to token ids (JSON)", loom::cli::cmd_tokenize},
    {"detokenize", "token ids to text (JSON)", loom::cli::cmd_detokenize},
    {"chat-template", "render a chat template and its ids (JSON)", loom::cli::cmd_chat_template},
    {"serve", "serve the model over an OpenAI-compatible HTTP API", loom::cli::cmd_serve},
    {"bench", "bench latency: prefill / decode timings of a static batch (GPU); bench serving: load on an OpenAI server", loom::cli::cmd_bench},
};

void usage() {
  std::fprintf(stderr, "usage: loom <command> [flags]\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(stderr, "  %-16s %s\n", c.name, c.summary);
}

}  // namespace

namespace loom::cli {
int cmd_version(Args& args) {
  args.finish();
  std::printf("loom 0.1\n");
  return 0;
}
}  // namespace loom::cli

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      loom::cli::Args args(argc, argv, 2);
      return c.run(args);
    } catch (const loom::InvalidArgument& e) {
      std::fprintf(stderr, "loom %s: error: %s\n", c.name, e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "loom %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::string names;
  for (const auto& c : kCommands) names += (names.empty() ? "" : ", ") + std::string(c.name);
  std::fprintf(stderr, "loom: error: unknown command '%s' (commands: %s)\n", name.c_str(), names.c_str());
  return 2;
}
