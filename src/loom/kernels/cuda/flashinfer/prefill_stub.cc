// flashinfer_prefill.h in a build without FlashInfer's headers (scripts/setup.sh unpacks them;
// CMake says at configure time which one it built): nothing applies, so attention stays on
// loom's own kernel.
#include "loom/kernels/cuda/flashinfer_prefill.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {

struct FlashInferPrefillWorkspace::Impl {};

FlashInferPrefillWorkspace::FlashInferPrefillWorkspace() : impl_(std::make_unique<Impl>()) {}
FlashInferPrefillWorkspace::~FlashInferPrefillWorkspace() = default;

bool flashinfer_prefill_built() { return false; }
bool flashinfer_prefill_supports(int, int64_t, int64_t, int64_t) { return false; }

bool FlashInferPrefillWorkspace::plan(const int32_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                      int64_t, cudaStream_t) {
  return false;
}

bool FlashInferPrefillWorkspace::plan_ragged(const int32_t*, int64_t, int64_t, int64_t, int64_t, cudaStream_t) {
  return false;
}

void FlashInferPrefillWorkspace::run_ragged(const void*, const void*, const void*, void*, int64_t, int64_t, int64_t,
                                            float, cudaStream_t) {
  throw Error("FlashInfer prefill attention: this build has no FlashInfer (run scripts/setup.sh, reconfigure)");
}

void FlashInferPrefillWorkspace::run(const PagedKvArgs&, const void*, void*, int64_t, int64_t, float, cudaStream_t) {
  throw Error("FlashInfer prefill attention: this build has no FlashInfer (run scripts/setup.sh, reconfigure)");
}

}  // namespace loom::kernels::cuda
