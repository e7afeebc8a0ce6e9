// flashinfer_mla.h in a build without FlashInfer's headers (scripts/setup.sh unpacks them): no GPU
// runs the kernel, so DeepSeek-V2's 512-dim latent is refused on CUDA at load (model/deepseek_v2.cc).
#include "loom/kernels/cuda/flashinfer_mla.h"
#include "loom/tensor/error.h"

namespace loom::kernels::cuda {

struct FlashInferMlaWorkspace::Impl {};

bool flashinfer_mla_supports(int, int64_t, int64_t) { return false; }

FlashInferMlaWorkspace::FlashInferMlaWorkspace(int, int64_t) {
  throw Error("FlashInfer MLA attention: this build has no FlashInfer (run scripts/setup.sh, reconfigure)");
}
FlashInferMlaWorkspace::~FlashInferMlaWorkspace() = default;
void FlashInferMlaWorkspace::attend(const MlaBatch&, const MlaArgs&, cudaStream_t) {}
int64_t FlashInferMlaWorkspace::plan(const MlaBatch&, int64_t, bool, cudaStream_t) { return 0; }
void FlashInferMlaWorkspace::run(const MlaArgs&, cudaStream_t) {}

}  // namespace loom::kernels::cuda
