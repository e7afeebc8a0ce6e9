#include "loom/runtime/device_sampler.h"

#include <cstring>

#ifdef LOOM_HAVE_CUDA
#include "loom/kernels/cuda/kernels.h"
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom::runtime {

#ifdef LOOM_HAVE_CUDA
namespace kc = kernels::cuda;

// Device buffers grow to the largest step seen; the pinned staging area carries the row
// parameters and edits up and the ids and logprobs down in one copy each way.
struct DeviceSampler::Buffers {
  int device = -1;
  Tensor scratch;          // f32 [2, rows, vocab]: edited logits, then probabilities
  Tensor params;           // u8 bytes: SampleRow[rows] then SampleEdit[edits]
  Tensor results;          // u8 bytes: int32 ids[rows] then f32 logprobs[rows]
  void* pinned = nullptr;  // staging for both directions
  size_t pinned_bytes = 0;

  ~Buffers() {
    if (pinned) cudaFreeHost(pinned);
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

namespace {
Tensor grown(const Tensor& t, int64_t n, DType dtype, Device d) {
  if (t.defined() && t.numel() >= n && t.device() == d) return t;
  return Tensor::empty({std::max<int64_t>(n, 1)}, dtype, d);
}
}  // namespace

DeviceSampler::DeviceSampler() : b_(std::make_unique<Buffers>()) {}
DeviceSampler::~DeviceSampler() = default;

void DeviceSampler::sample(const Tensor& logits, int64_t vocab, const std::vector<SampleRowPlan>& rows,
                           const std::vector<LogitEdit>& edits, const uint32_t* masks, size_t mask_len,
                           std::vector<int32_t>& ids, std::vector<float>& logprobs) {
  const Device dev = logits.device();
  LOOM_CHECK(dev.is_cuda() && logits.dtype() == DType::bf16 && logits.dim() == 2 && logits.strides()[1] == 1,
             "device sampling needs bf16 logits [rows, vocab] with unit column stride on a GPU, got ", logits.str());
  const int64_t n = static_cast<int64_t>(rows.size());
  LOOM_CHECK(logits.size(0) == n && logits.size(1) >= vocab, "device sampling: ", n, " row plans for logits ",
             logits.str(), " (vocab ", vocab, ")");
  ids.assign(static_cast<size_t>(n), -1);
  logprobs.assign(static_cast<size_t>(n), 0.0f);
  if (n == 0) return;
  CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t s = cuda::current_stream(dev.index);

  const size_t row_bytes = n * sizeof(kc::SampleRow), edit_bytes = edits.size() * sizeof(kc::SampleEdit);
  const size_t mask_bytes = mask_len * sizeof(uint32_t);  // last: the words need only 4-byte alignment
  const size_t up = row_bytes + edit_bytes + mask_bytes, down = n * (sizeof(int32_t) + sizeof(float));
  b_->reserve_pinned(std::max(up, down));
  auto* prow = static_cast<kc::SampleRow*>(b_->pinned);
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
  auto* pedit = reinterpret_cast<kc::SampleEdit*>(static_cast<char*>(b_->pinned) + row_bytes);
  for (size_t i = 0; i < edits.size(); ++i) pedit[i] = {edits[i].token, edits[i].bias, edits[i].repetition, edits[i].sub};
  if (mask_bytes) std::memcpy(static_cast<char*>(b_->pinned) + row_bytes + edit_bytes, masks, mask_bytes);

  b_->params = grown(b_->params, static_cast<int64_t>(up), DType::u8, dev);
  b_->results = grown(b_->results, static_cast<int64_t>(down), DType::u8, dev);
  b_->scratch = grown(b_->scratch, 2 * n * vocab, DType::f32, dev);
  auto* dparams = static_cast<char*>(b_->params.data_ptr());
  auto* dresults = static_cast<char*>(b_->results.data_ptr());
  float* scratch = b_->scratch.data<float>();
  CUDA_CHECK(cudaMemcpyAsync(dparams, b_->pinned, up, cudaMemcpyHostToDevice, s));
  kc::sample_rows(logits.data_ptr(), n, logits.strides()[0], vocab, reinterpret_cast<const kc::SampleRow*>(dparams),
                  reinterpret_cast<const kc::SampleEdit*>(dparams + row_bytes),
                  reinterpret_cast<const uint32_t*>(dparams + row_bytes + edit_bytes), scratch, scratch + n * vocab,
                  reinterpret_cast<int32_t*>(dresults), reinterpret_cast<float*>(dresults + n * sizeof(int32_t)), s);
  // The staging area is reused for the way down only after the upload has been read: same stream.
  CUDA_CHECK(cudaMemcpyAsync(b_->pinned, dresults, down, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  const auto* hid = static_cast<const int32_t*>(b_->pinned);
  const auto* hlp = reinterpret_cast<const float*>(static_cast<const char*>(b_->pinned) + n * sizeof(int32_t));
  for (int64_t i = 0; i < n; ++i) {
    if (rows[static_cast<size_t>(i)].skip) continue;
    ids[static_cast<size_t>(i)] = hid[i];
    logprobs[static_cast<size_t>(i)] = hlp[i];
  }
}

#else

struct DeviceSampler::Buffers {};
DeviceSampler::DeviceSampler() = default;
DeviceSampler::~DeviceSampler() = default;
void DeviceSampler::sample(const Tensor&, int64_t, const std::vector<SampleRowPlan>&, const std::vector<LogitEdit>&,
                           const uint32_t*, size_t, std::vector<int32_t>&, std::vector<float>&) {
  throw Error("device sampling needs a build with CUDA");
}

#endif

}  // namespace loom::runtime
