// Continuous batching over one Runner, single-threaded (the Engine's thread calls it).
//
// Every step() runs one forward over a batch of running requests, either a decode step (each
// decoding request adds its one new token) or a prefill step (prefilling requests add a chunk,
// all chunks together at most chunked_prefill_size tokens, and waiting requests join while there
// is room: running count, prefill budget, KV pages); see step() for how the two alternate. When the pool runs out the newest running request is retracted: its
// pages go back (into the prefix cache) and it waits at the head of the queue to be recomputed,
// keeping its tokens and sampler state, so a greedy request's output does not change.
//
// Overlap (SchedulerOptions::overlap): a decode step is left running while the host queues the
// next step behind it. A decode step's input tokens are then the running step's sampled ids,
// still on the device (placeholders the runner resolves there; on a CPU runner the ids are known
// and passed as they are); a prefill step needs none of them. Only then does the host take the
// first step's ids in (stop checks, detokenizing, the output callbacks), while the GPU computes
// the second: the GPU does not wait for the host between steps. A request that ends on the step
// in flight (a stop token) has computed one token more than it needed, dropped. Steps that need
// the previous token on the host (grammar masks, penalties, top logprobs), or that would have to
// retract a request for pages, wait for the step in flight first, as without overlap.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "loom/cache/radix_cache.h"
#include "loom/engine/metrics.h"
#include "loom/engine/request.h"
#include "loom/engine/sampler.h"
#include "loom/engine/text_stream.h"
#include "loom/engine/validate.h"
#include "loom/runtime/model_runner.h"
#include "loom/tokenizer/tokenizer.h"

namespace loom::engine {

struct SchedulerOptions {
  int64_t max_running_requests = 64;
  int64_t chunked_prefill_size = 512;  // prefill tokens per step (all requests together) while any decode
  int64_t max_prefill_tokens = 0;      // ... and while none does (nobody waits on it); 0 = chunked_prefill_size
  bool disable_radix_cache = false;
  bool overlap = true;  // queue a step before the previous decode step's tokens are on the host
};

class Scheduler {
 public:
  Scheduler(runtime::Runner& runner, const tokenizer::Tokenizer& tokenizer, SchedulerOptions options);
  ~Scheduler();

  ModelLimits limits() const { return limits_; }
  // Queues a request (validate_request() first). Outputs go to request.on_output.
  void add(uint64_t id, Request request);
  // Ends a waiting or running request with finish_reason abort; unknown ids are ignored.
  void abort(uint64_t id);
  void abort_all();
  bool idle() const { return waiting_.empty() && running_.empty() && !in_flight_; }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }

  // One forward over the next batch; returns false when there was nothing to run. With overlap, a
  // decode step may return with its step still running, its tokens delivered by the next call.
  bool step();

  EngineStats& stats();  // gauges refreshed
  std::string idle_leak_report() const { return cache_.idle_leak_report(); }
  cache::RadixCache& cache() { return cache_; }

 private:
  struct Sequence;
  using Clock = std::chrono::steady_clock;

  struct Batch {
    std::vector<Sequence*> seqs;
    std::vector<int64_t> chunks;  // tokens each sequence computes this step
  };
  // A step whose forward (and, on a GPU, sampling) has been queued; complete() takes its tokens in.
  struct Launched {
    std::vector<uint64_t> ids;      // the batch's requests (one may end before the step completes)
    std::vector<char> yields;       // the row yields a token (its chunk reaches the end of its tokens)
    std::vector<int32_t> next;      // host sampling: the chosen ids, known at launch
    std::vector<TokenLogprob> logprobs;
    Tensor logits;                  // device sampling: the step's logits (top logprobs read rows)
    bool on_device = false;         // the ids come from device_sampler_->finish()
    bool decode = false;
  };
  Batch decode_batch();
  Batch prefill_batch(bool decoders_wait, bool may_retract = true);
  bool run(const Batch& batch);
  model::ForwardBatch forward_batch(const Batch& batch);
  std::optional<Launched> launch(const Batch& batch, model::ForwardBatch fb);
  void complete(Launched& step);
  void complete_in_flight();
  std::optional<Launched> launch_behind_in_flight();
  bool prefill_due() const;
  bool overlappable(const Sequence& s) const;
  bool make_room(Sequence& s, int64_t tokens, const std::vector<Sequence*>& batch, bool may_retract = true);
  bool admit(Sequence& s, int64_t budget, int64_t& chunk);
  void retract(Sequence& s);
  void release(Sequence& s);
  void finish(Sequence& s, RequestOutput& out, FinishReason reason);
  void on_token(Sequence& s, int32_t token, TokenLogprob logprob);
  std::vector<int32_t> grammar_masks(const std::vector<Sequence*>& batch, const std::vector<char>& yields);
  void plan_device_sampling(const std::vector<Sequence*>& batch, const std::vector<char>& yields,
                            const std::vector<int32_t>& mask_rows);
  void fail_ids(const std::vector<uint64_t>& ids, const std::string& what);
  Sequence* newest_running_not_in(const std::vector<Sequence*>& batch);
  bool sibling_prefilling(const Sequence& s) const;

  runtime::Runner& runner_;
  tokenizer::Tokenizer tokenizer_;
  SchedulerOptions options_;
  ModelLimits limits_;
  cache::RadixCache cache_;
  std::vector<int32_t> eos_ids_;
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> seqs_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // in admission order: the back is the newest
  EngineStats stats_;
  uint64_t next_seed_;
  bool last_step_prefill_ = false;
  std::unique_ptr<runtime::DeviceSampler> device_sampler_;  // made on the first step with GPU logits
  std::vector<runtime::SampleRowPlan> plans_;
  std::vector<runtime::LogitEdit> edits_;
  std::vector<uint32_t> masks_;  // this step's grammar masks (grammar_masks)
  std::optional<Launched> in_flight_;  // a step queued and not yet completed (overlap)
};

}  // namespace loom::engine
