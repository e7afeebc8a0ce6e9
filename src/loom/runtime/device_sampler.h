// Token sampling on the GPU: a step's logits stay on the device and only the chosen ids (and
// the chosen tokens' logprobs) cross to the host. The engine's Sampler describes each row
// (Sampler::plan_device) with the same semantics and RNG draws as its host path, so greedy
// requests are identical on either side and seeded ones agree wherever float rounding allows.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "loom/tensor/tensor.h"

namespace loom::runtime {

struct SampleRowPlan {
  double u = 0;  // uniform [0, 1) drawn from the request's RNG; unused when greedy
  double temperature = 1;  // the request's values, unrounded, as the host sampler uses them
  double top_p = 1;
  double min_p = 0;
  int32_t top_k = 0;
  bool greedy = true;
  bool want_logprob = false;
  bool skip = false;  // this row yields no token (a prefill chunk short of the prompt's end)
  int32_t mask_row = -1;  // >= 0: only the tokens of this grammar mask (of the step's masks) may be drawn
  int32_t edit_begin = 0, edit_end = 0;  // the row's edits in the step's edit list
};

// One token's logit after logit_bias and penalties: v = l + bias; repetition penalty when != 1
// (v > 0 ? v / r : v * r); v -= sub.
struct LogitEdit {
  int32_t token = 0;
  float bias = 0;
  float repetition = 1;
  float sub = 0;
};

class DeviceSampler {
 public:
  DeviceSampler();
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // One id per row of `logits` ([rows, >= vocab] bf16 on a CUDA device; the first `vocab`
  // columns count) into ids (-1 for skipped rows), and the chosen token's logprob where asked.
  // `masks` (host, `mask_len` words): the step's grammar bitmasks, ceil(vocab / 32) words each,
  // bit t of word t / 32 allowing token t; rows name theirs by mask_row.
  // Runs on the calling thread's current stream of the logits' device and waits for the ids.
  void sample(const Tensor& logits, int64_t vocab, const std::vector<SampleRowPlan>& rows,
              const std::vector<LogitEdit>& edits, const uint32_t* masks, size_t mask_len, std::vector<int32_t>& ids,
              std::vector<float>& logprobs) {
    launch(logits, vocab, rows, edits, masks, mask_len);
    finish(ids, logprobs);
  }

  // The same in two halves, so that the host can queue the next step before this one's ids are
  // back (the engine's overlapped decode): launch() queues the draw and the ids' copy to the host
  // and returns; finish() waits for the oldest launch not yet finished and hands its results
  // over. At most two launches are unfinished at a time (each has its own staging).
  void launch(const Tensor& logits, int64_t vocab, const std::vector<SampleRowPlan>& rows,
              const std::vector<LogitEdit>& edits, const uint32_t* masks, size_t mask_len);
  void finish(std::vector<int32_t>& ids, std::vector<float>& logprobs);
  // The latest launch's ids (int32 [rows]) in device memory, valid until the launch after next:
  // a step queued behind it reads its input tokens from there.
  const int32_t* launched_ids() const;

 private:
  struct Slot;
  struct Buffers;
  std::unique_ptr<Buffers> b_;
};

}  // namespace loom::runtime
