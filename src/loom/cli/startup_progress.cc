#include "loom/cli/startup_progress.h"

#include <unistd.h>

#include <cstdio>
#include <string>

namespace loom::cli {

model::ProgressFn terminal_progress() {
  if (!isatty(STDERR_FILENO)) return {};
  return [](const char* stage, int64_t done, int64_t total) {
    constexpr int64_t kWidth = 30;
    const int64_t filled = total > 0 ? done * kWidth / total : kWidth;
    std::fprintf(stderr, "\rloom: %-22s [%s%s] %lld/%lld", stage, std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total));
    if (done >= total) std::fputc('\n', stderr);
    std::fflush(stderr);
  };
}

}  // namespace loom::cli
