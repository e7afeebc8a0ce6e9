#include "loom/runtime/device_sampler.h"

#include <algorithm>
#include <cstring>

#ifdef LOOM_HAVE_CUDA
#include "loom/kernels/cuda/kernels.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom::runtime {

#ifdef LOOM_HAVE_CUDA
namespace kc = kernels::cuda;

// Device buffers grow to the largest step seen. Each of the two slots has a pinned staging area
// that carries its launch's row parameters and edits up and its ids and logprobs down, one copy
// each way; a launch uses the slot its launch-before-last used, finished by then.
struct DeviceSampler::Slot {
  Tensor params;           // u8 bytes: SampleRow[rows] then SampleEdit[edits] then mask words
  Tensor results;          // u8 bytes: int32 ids[rows] then f32 logprobs[rows]
  void* pinned = nullptr;  // staging for both directions
  size_t pinned_bytes = 0;
  cudaEvent_t copied = nullptr;  // the results reached `pinned`
  std::vector<char> skip;        // rows that yield no id
  int device = -1;

  ~Slot() {
    if (pinned) cudaFreeHost(pinned);
    if (copied) cudaEventDestroy(copied);
  }
  void reserve_pinned(size_t bytes) {
    if (bytes <= pinned_bytes) return;
    if (pinned) CUDA_CHECK(cudaFreeHost(pinned));
    pinned = nullptr;
    pinned_bytes = 0;
    CUDA_CHECK(cudaMallocHost(&pinned, bytes));
    pinned_bytes = bytes;
  }
};

struct DeviceSampler::Buffers {
  Tensor scratch;  // f32 [2, rows, vocab]: edited logits, then probabilities (stream-ordered, shared)
  Slot slots[2];
  int next = 0;        // the slot the next launch takes
  int unfinished = 0;  // launches not yet finished (0, 1 or 2)
  // The oldest unfinished launch's slot: the latest is next ^ 1, the one before it next.
  int oldest() const { return unfinished == 2 ? next : next ^ 1; }
};

namespace {
Tensor grown(const Tensor& t, int64_t n, DType dtype, Device d) {
  if (t.defined() && t.numel() >= n && t.device() == d) return t;
  return Tensor::empty({std::max<int64_t>(n, 1)}, dtype, d);
}
}  // namespace

DeviceSampler::DeviceSampler() : b_(std::make_unique<Buffers>()) {}
DeviceSampler::~DeviceSampler() = default;

void DeviceSampler::launch(const Tensor& logits, int64_t vocab, const std::vector<SampleRowPlan>& rows,
                           const std::vector<LogitEdit>& edits, const uint32_t* masks, size_t mask_len) {
  const Device dev = logits.device();
  LOOM_CHECK(dev.is_cuda() && logits.dtype() == DType::bf16 && logits.dim() == 2 && logits.strides()[1] == 1,
             "device sampling needs bf16 logits [rows, vocab] with unit column stride on a GPU, got ", logits.str());
  const int64_t n = static_cast<int64_t>(rows.size());
  LOOM_CHECK(logits.size(0) == n && logits.size(1) >= vocab, "device sampling: ", n, " row plans for logits ",
             logits.str(), " (vocab ", vocab, ")");
  LOOM_CHECK(b_->unfinished < 2, "device sampling: two launches are unfinished; finish() the oldest first");
  Slot& slot = b_->slots[b_->next];
  slot.skip.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) slot.skip[static_cast<size_t>(i)] = rows[static_cast<size_t>(i)].skip;
  CUDA_CHECK(cudaSetDevice(dev.index));
  if (slot.copied && slot.device != dev.index) {  // a runner on another GPU: the event belongs to the old one
    CUDA_CHECK(cudaEventDestroy(slot.copied));
    slot.copied = nullptr;
  }
  if (!slot.copied) CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
  slot.device = dev.index;
  const cudaStream_t s = cuda::current_stream(dev.index);

  const size_t row_bytes = n * sizeof(kc::SampleRow), edit_bytes = edits.size() * sizeof(kc::SampleEdit);
  const size_t mask_bytes = mask_len * sizeof(uint32_t);  // last: the words need only 4-byte alignment
  const size_t up = row_bytes + edit_bytes + mask_bytes, down = n * (sizeof(int32_t) + sizeof(float));
  slot.reserve_pinned(std::max<size_t>({up, down, 1}));
  auto* prow = static_cast<kc::SampleRow*>(slot.pinned);
  for (int64_t i = 0; i < n; ++i) {
    const SampleRowPlan& r = rows[static_cast<size_t>(i)];
    kc::SampleRow k;
    k.u = r.u;
    k.temperature = r.temperature;
    k.top_p = r.top_p;
    k.min_p = r.min_p;
    k.top_k = r.top_k;
    k.edit_begin = r.edit_begin;
    k.edit_end = r.edit_end;
    k.greedy = r.greedy;
    k.want_logprob = r.want_logprob;
    k.skip = r.skip;
    k.mask_row = r.mask_row;
    prow[i] = k;
  }
  auto* pedit = reinterpret_cast<kc::SampleEdit*>(static_cast<char*>(slot.pinned) + row_bytes);
  for (size_t i = 0; i < edits.size(); ++i) pedit[i] = {edits[i].token, edits[i].bias, edits[i].repetition, edits[i].sub};
  if (mask_bytes) std::memcpy(static_cast<char*>(slot.pinned) + row_bytes + edit_bytes, masks, mask_bytes);

  slot.params = grown(slot.params, static_cast<int64_t>(up), DType::u8, dev);
  slot.results = grown(slot.results, static_cast<int64_t>(down), DType::u8, dev);
  b_->scratch = grown(b_->scratch, 2 * n * vocab, DType::f32, dev);
  auto* dparams = static_cast<char*>(slot.params.data_ptr());
  auto* dresults = static_cast<char*>(slot.results.data_ptr());
  float* scratch = b_->scratch.data<float>();
  if (n > 0) {
    CUDA_CHECK(cudaMemcpyAsync(dparams, slot.pinned, up, cudaMemcpyHostToDevice, s));
    kc::sample_rows(logits.data_ptr(), n, logits.strides()[0], vocab, reinterpret_cast<const kc::SampleRow*>(dparams),
                    reinterpret_cast<const kc::SampleEdit*>(dparams + row_bytes),
                    reinterpret_cast<const uint32_t*>(dparams + row_bytes + edit_bytes), scratch, scratch + n * vocab,
                    reinterpret_cast<int32_t*>(dresults), reinterpret_cast<float*>(dresults + n * sizeof(int32_t)), s);
    // The staging area is reused for the way down only after the upload has been read: same stream.
    CUDA_CHECK(cudaMemcpyAsync(slot.pinned, dresults, down, cudaMemcpyDeviceToHost, s));
  }
  CUDA_CHECK(cudaEventRecord(slot.copied, s));
  b_->next ^= 1;
  ++b_->unfinished;
}

const int32_t* DeviceSampler::launched_ids() const {
  LOOM_CHECK(b_->unfinished > 0 || b_->slots[b_->next ^ 1].results.defined(), "device sampling: nothing launched");
  return static_cast<const int32_t*>(b_->slots[b_->next ^ 1].results.data_ptr());
}

void DeviceSampler::finish(std::vector<int32_t>& ids, std::vector<float>& logprobs) {
  LOOM_CHECK(b_->unfinished > 0, "device sampling: finish() without a launch");
  Slot& slot = b_->slots[b_->oldest()];
  --b_->unfinished;
  CUDA_CHECK(cudaEventSynchronize(slot.copied));
  const int64_t n = static_cast<int64_t>(slot.skip.size());
  ids.assign(static_cast<size_t>(n), -1);
  logprobs.assign(static_cast<size_t>(n), 0.0f);
  const auto* hid = static_cast<const int32_t*>(slot.pinned);
  const auto* hlp = reinterpret_cast<const float*>(static_cast<const char*>(slot.pinned) + n * sizeof(int32_t));
  for (int64_t i = 0; i < n; ++i) {
    if (slot.skip[static_cast<size_t>(i)]) continue;
    ids[static_cast<size_t>(i)] = hid[i];
    logprobs[static_cast<size_t>(i)] = hlp[i];
  }
}

#else

struct DeviceSampler::Buffers {};
DeviceSampler::DeviceSampler() = default;
DeviceSampler::~DeviceSampler() = default;
void DeviceSampler::launch(const Tensor&, int64_t, const std::vector<SampleRowPlan>&, const std::vector<LogitEdit>&,
                           const uint32_t*, size_t) {
  throw Error("device sampling needs a build with CUDA");
}
void DeviceSampler::finish(std::vector<int32_t>&, std::vector<float>&) {
  throw Error("device sampling needs a build with CUDA");
}
const int32_t* DeviceSampler::launched_ids() const { throw Error("device sampling needs a build with CUDA"); }

#endif

}  // namespace loom::runtime
