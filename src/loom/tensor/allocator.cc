#include "loom/tensor/allocator.h"

#include <cstdlib>
#include <new>

#include "loom/tensor/error.h"

namespace loom {
namespace {

class HostAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    void* p = std::aligned_alloc(64, (nbytes + 63) / 64 * 64);
    if (!p) throw Error(str("host allocation of ", nbytes, " bytes failed"));
    return p;
  }
  void deallocate(void* p, size_t) override { std::free(p); }
};

}  // namespace

Allocator& host_allocator() {
  static HostAllocator a;
  return a;
}

#ifndef LOOM_HAVE_CUDA
Allocator& device_allocator(const Device& d) {
  throw Error(str("device ", d.str(), " requested but loom was built without the CUDA backend"));
}
#endif

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t pos = 0;
      int i = std::stoi(s.substr(5), &pos);
      if (pos == s.size() - 5 && i >= 0) return Device::cuda(i);
    } catch (const std::exception&) {
    }
  }
  throw InvalidArgument(str("--device: unknown device '", s, "' (allowed: cpu, cuda, cuda:N)"));
}

}  // namespace loom
