// Without the CUDA backend, a CUDA tensor reaching an op is a clear error, not a link failure.
#ifndef LOOM_HAVE_CUDA_OPS
#include "loom/layers/ops_cuda.h"

namespace loom::layers::ops::cuda {
namespace {
[[noreturn]] void unavailable(const char* op) {
  throw Error(str("layers::ops::", op, " on a CUDA tensor, but loom was built without the CUDA backend"));
}
}  // namespace

Tensor embedding(const Tensor&, const Tensor&) { unavailable("embedding"); }
Tensor linear(const Tensor&, const Tensor&, const Tensor*) { unavailable("linear"); }
Routing linear_route_topk_softmax(const Tensor&, const Tensor&, int64_t, bool, Tensor*) {
  unavailable("linear_route_topk_softmax");
}
std::vector<Tensor> linears(const Tensor&, const std::vector<const Tensor*>&, const std::vector<const Tensor*>&) {
  unavailable("linears");
}
Tensor rms_norm(const Tensor&, const Tensor&, float) { unavailable("rms_norm"); }
Tensor add_rms_norm(Tensor&, const Tensor&, const Tensor&, float) { unavailable("add_rms_norm"); }
void add_(Tensor&, const Tensor&) { unavailable("add_"); }
void qk_norm_rope(Tensor&, Tensor&, const Tensor*, const Tensor*, float, const Rope&, const ForwardContext&) {
  unavailable("qk_norm_rope");
}
Tensor attention(const Tensor&, const Tensor&, const Tensor&, int64_t, const AttentionParams&,
                 const ForwardContext&) {
  unavailable("attention");
}
Tensor silu_and_mul(const Tensor&) { unavailable("silu_and_mul"); }
Routing route_topk_softmax(const Tensor&, int64_t, bool) { unavailable("route_topk_softmax"); }
Tensor moe_experts(const Tensor&, const Routing&, const Tensor&, const Tensor&, int64_t, const ExpertOptions&) {
  unavailable("moe_experts");
}
Routing route_grouped_topk_softmax(const Tensor&, const GroupedTopk&) { unavailable("route_grouped_topk_softmax"); }
Tensor per_head_linear(const Tensor&, const Tensor&) { unavailable("per_head_linear"); }
void copy_(Tensor&, const Tensor&) { unavailable("copy_"); }
Tensor gather_rows(const Tensor&, const Tensor&) { unavailable("gather_rows"); }
void drop_routes_past(Routing&, const Tensor&) { unavailable("drop_routes_past"); }
Tensor embedding_slice(const Tensor&, const Tensor&, int64_t) { unavailable("embedding_slice"); }
void write_kv(const Tensor&, const Tensor&, int64_t, const ForwardContext&) { unavailable("write_kv"); }
void index_add_rows(Tensor&, const Tensor&, const Tensor&) { unavailable("index_add_rows"); }
DispatchPlan moe_dispatch_plan(const Routing&, int, int64_t) { unavailable("moe_dispatch_plan"); }
Routing unpack_routing(const Tensor&, int64_t) { unavailable("unpack_routing"); }
Tensor concat_vocab_shards(const Tensor&, int, int64_t) { unavailable("concat_vocab_shards"); }
void set_op_profiling(bool) { unavailable("set_op_profiling"); }
bool latent_attention_supported(int, int64_t, int64_t) { return false; }
bool attention_folds_qk_norm_rope(const Tensor&, int64_t, const Rope&, const ForwardContext&) { return false; }
std::vector<ReplayPrep> take_replay_preps() { return {}; }
std::vector<OpTime> take_op_profile() { unavailable("take_op_profile"); }

}  // namespace loom::layers::ops::cuda
#endif
