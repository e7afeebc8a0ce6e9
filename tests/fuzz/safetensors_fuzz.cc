// A malicious .safetensors file: opening it either fails with loom::Error or yields entries whose
// bytes lie inside the file, and touching each entry's first and last byte never faults.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "loom/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz.safetensors", 0);
  if (fd < 0) __builtin_trap();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) __builtin_trap();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    loom::io::SafetensorsFile f(path);
    volatile uint8_t sink = 0;
    for (const auto& [name, e] : f.entries()) {
      if (e.end < e.begin || e.end > size) __builtin_trap();  // validated against the file
      if (e.end > e.begin) sink = sink + f.data(e)[0] + f.data(e)[e.end - e.begin - 1];
    }
  } catch (const loom::Error&) {
  }
  return 0;
}
