#include "loom/engine/scheduler.h"

#include <algorithm>
#include <random>

#include "loom/grammar/constraint.h"

namespace loom::engine {

struct Scheduler::Sequence {
  Sequence(uint64_t id_, Request r, const tokenizer::Tokenizer& tok, uint64_t seed)
      : id(id_),
        req(std::move(r)),
        tokens(req.prompt),
        prompt_len(static_cast<int64_t>(req.prompt.size())),
        sampler(req.params, req.prompt, seed),
        text(tok, req.params.skip_special_tokens, req.params.stop),
        submitted(Clock::now()) {
    if (req.params.constraint) matcher.emplace(req.params.constraint, req.params.constraint_after);
  }

  int64_t num_output() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  // Tokens to compute: those not in the KV yet, counting the ones steps in flight are sampling.
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) + inflight - kv_len; }

  uint64_t id;
  Request req;
  std::vector<int32_t> tokens;  // prompt, then the output so far
  int64_t prompt_len;
  int64_t kv_len = 0;           // positions whose K/V sit in `pages` (or are being written by a step in flight)
  int64_t inflight = 0;         // tokens being sampled by launched, not yet completed steps (overlap: up to 2)
  int32_t inflight_row = -1;    // this sequence's row in the latest of those steps
  std::vector<int32_t> pages;
  cache::RadixCache::Node* lock = nullptr;
  bool running = false;
  bool admitted_once = false;
  int64_t cached_tokens = 0;    // prompt tokens the prefix cache served at first admission
  Sampler sampler;
  std::optional<grammar::Matcher> matcher;  // a constrained request's place in its grammar
  TextStream text;
  Clock::time_point submitted, last_token;
};

Scheduler::Scheduler(runtime::Runner& runner, const tokenizer::Tokenizer& tokenizer, SchedulerOptions options)
    : runner_(runner),
      tokenizer_(tokenizer),
      options_(options),
      cache_(runner.kv_pool(), !options.disable_radix_cache),
      next_seed_(std::random_device{}()) {
  LOOM_CHECK_ARG(options_.max_running_requests >= 1, "--max-running-requests must be at least 1");
  LOOM_CHECK_ARG(options_.chunked_prefill_size >= 1, "--chunked-prefill-size must be at least 1");
  LOOM_CHECK_ARG(options_.max_prefill_tokens >= 0, "--max-prefill-tokens must be at least 1");
  const auto& cfg = runner.config();
  limits_.vocab_size = cfg.vocab_size;
  limits_.context_length = cfg.max_position_embeddings;
  limits_.kv_capacity = runner.kv_pool().num_pages() * runner.kv_pool().page_size();
  for (int64_t id : cfg.eos_token_ids) eos_ids_.push_back(static_cast<int32_t>(id));
  if (auto e = tokenizer_.eos_token_id()) eos_ids_.push_back(*e);
  std::sort(eos_ids_.begin(), eos_ids_.end());
  eos_ids_.erase(std::unique(eos_ids_.begin(), eos_ids_.end()), eos_ids_.end());
  limits_.eos_token_ids = eos_ids_;
}

Scheduler::~Scheduler() {
  // A step still on the GPU reads and writes buffers about to go: wait for it (its tokens are dropped).
  if (in_flight_ && in_flight_->on_device && device_sampler_) {
    std::vector<int32_t> ids;
    std::vector<float> logprobs;
    try {
      device_sampler_->finish(ids, logprobs);
    } catch (const std::exception&) {  // the device failed: nothing to wait for
    }
  }
}

void Scheduler::add(uint64_t id, Request request) {
  LOOM_CHECK(!seqs_.count(id), "request id ", id, " is already in use");
  auto s = std::make_unique<Sequence>(id, std::move(request), tokenizer_, next_seed_++);
  waiting_.push_back(s.get());
  seqs_.emplace(id, std::move(s));
  ++stats_.requests_submitted;
}

void Scheduler::abort(uint64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  RequestOutput out;
  finish(*it->second, out, FinishReason::abort);
  // Nothing left to run: the step in flight ends now, so that the scheduler is idle.
  if (waiting_.empty() && running_.empty() && in_flight_) complete_in_flight();
}

void Scheduler::abort_all() {
  std::vector<uint64_t> ids;
  for (auto& [id, s] : seqs_) ids.push_back(id);
  for (uint64_t id : ids) abort(id);
}

EngineStats& Scheduler::stats() {
  const auto& pool = runner_.kv_pool();
  stats_.waiting = static_cast<int64_t>(waiting_.size());
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.kv_pages_total = pool.num_pages();
  stats_.kv_pages_free = pool.num_free();
  stats_.kv_pages_cached = cache_.cached_pages();
  stats_.kv_pages_locked = cache_.locked_pages();
  stats_.page_size = pool.page_size();
  return stats_;
}

// Gives the sequence's pages back (into the prefix cache when it is on).
void Scheduler::release(Sequence& s) {
  // A step in flight may be writing the K/V of a token not yet in `tokens`: that position is not
  // cached (its page goes back to the pool, rewritten only by steps queued after it).
  const int64_t computed = std::min<int64_t>(s.kv_len, static_cast<int64_t>(s.tokens.size()));
  if (!s.pages.empty() || s.lock) cache_.release(s.tokens, s.pages, computed, s.lock);
  s.pages.clear();
  s.lock = nullptr;
  s.kv_len = 0;
}

void Scheduler::retract(Sequence& s) {
  release(s);
  s.running = false;
  running_.erase(std::find(running_.begin(), running_.end(), &s));
  waiting_.push_front(&s);
  ++stats_.retractions;
}

// Ends the sequence: frees its KV, sends `out` marked finished, forgets it.
void Scheduler::finish(Sequence& s, RequestOutput& out, FinishReason reason) {
  release(s);
  if (s.running) {
    running_.erase(std::find(running_.begin(), running_.end(), &s));
  } else {
    auto it = std::find(waiting_.begin(), waiting_.end(), &s);
    if (it != waiting_.end()) waiting_.erase(it);
  }
  out.request_id = s.id;
  out.finished = true;
  out.finish_reason = reason;
  out.prompt_tokens = s.prompt_len;
  out.completion_tokens = s.num_output();
  out.cached_tokens = s.cached_tokens;
  switch (reason) {
    case FinishReason::stop: ++stats_.requests_finished_stop; break;
    case FinishReason::length: ++stats_.requests_finished_length; break;
    case FinishReason::abort: ++stats_.requests_finished_abort; break;
    default: ++stats_.requests_finished_error; break;
  }
  OutputCallback cb = std::move(s.req.on_output);
  seqs_.erase(s.id);  // destroys s
  if (cb) cb(out);
}

// One of the n choices of a prompt whose sibling is still prefilling it: worth waiting for.
bool Scheduler::sibling_prefilling(const Sequence& s) const {
  if (!s.req.prefix_group || !cache_.enabled()) return false;
  for (const Sequence* r : running_)
    if (r->req.prefix_group == s.req.prefix_group && r->kv_len < r->prompt_len) return true;
  return false;
}

Scheduler::Sequence* Scheduler::newest_running_not_in(const std::vector<Sequence*>& batch) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it)
    if (std::find(batch.begin(), batch.end(), *it) == batch.end()) return *it;
  return nullptr;
}

// Pages so that `s` covers kv_len + tokens positions, retracting newer requests that are not in
// this step's batch when the pool (after evicting cached pages) is short. False when `s` itself
// had to be retracted.
bool Scheduler::make_room(Sequence& s, int64_t tokens, const std::vector<Sequence*>& batch, bool may_retract) {
  const int64_t need = runner_.kv_pool().pages_for_tokens(s.kv_len + tokens) - static_cast<int64_t>(s.pages.size());
  if (need <= 0) return true;
  while (true) {
    if (auto pages = cache_.allocate(need)) {
      s.pages.insert(s.pages.end(), pages->begin(), pages->end());
      return true;
    }
    if (!may_retract) return false;  // a step is in flight: its requests keep their pages
    Sequence* victim = newest_running_not_in(batch);
    retract(*victim);  // s itself is not in the batch yet, so there is always a victim
    if (victim == &s) return false;
  }
}

// Tries to start a waiting sequence with a first chunk of at most `budget` tokens.
bool Scheduler::admit(Sequence& s, int64_t budget, int64_t& chunk) {
  const int64_t ps = runner_.kv_pool().page_size();
  // Reuse the longest cached prefix, but always compute at least the last token (its logits).
  auto m = cache_.match(s.tokens, static_cast<int64_t>(s.tokens.size()) - 1);
  cache_.lock(m.node);
  const int64_t cached = m.tokens() * ps;
  // Room for the whole remaining prefill, plus a page of decode growth per running request,
  // so that admitting does not immediately force a retraction.
  const int64_t need_all = runner_.kv_pool().pages_for_tokens(static_cast<int64_t>(s.tokens.size())) - m.tokens();
  if (need_all + static_cast<int64_t>(running_.size()) > cache_.available_pages() && !running_.empty()) {
    cache_.unlock(m.node);
    return false;
  }
  chunk = std::min<int64_t>(static_cast<int64_t>(s.tokens.size()) - cached, budget);
  const int64_t need = runner_.kv_pool().pages_for_tokens(cached + chunk) - m.tokens();
  auto pages = cache_.allocate(need);
  if (!pages) {
    cache_.unlock(m.node);
    return false;
  }
  s.pages = std::move(m.pages);
  s.pages.insert(s.pages.end(), pages->begin(), pages->end());
  s.kv_len = cached;
  s.lock = m.node;
  if (!s.admitted_once) {
    s.cached_tokens = cached;
    stats_.prefix_cache_hit_tokens += static_cast<uint64_t>(cached);
    stats_.prompt_tokens += static_cast<uint64_t>(s.prompt_len);
    s.admitted_once = true;
  }
  s.running = true;
  running_.push_back(&s);
  return true;
}

// Whether the next step is a prefill: a running request has prompt left, or a waiting one could
// join. (Right after a prefill step, decoders go first: see step().)
bool Scheduler::prefill_due() const {
  for (const Sequence* s : running_)
    if (s->pending() > 1) return true;
  return !waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.max_running_requests;
}

// A step is either all prefill (chunks of prompts, or of a retracted request's tokens) or all
// decode (one token for every decoding request), never both: a decode step then always has the
// shape a CUDA graph was captured for. While requests decode, prefill steps alternate with
// decode steps, so arriving prompts cannot stall the running ones for more than one step.
bool Scheduler::step() {
  if (in_flight_) {
    // Queue the next step behind the one in flight when it can run without that step's ids on
    // the host, then take those ids in while the new step runs.
    std::optional<Launched> behind = launch_behind_in_flight();
    complete_in_flight();
    if (behind) {
      in_flight_ = std::move(behind);
      ++stats_.overlapped_steps;
      return true;
    }
    if (idle()) return true;
  }
  bool decoders = false, prefillers = false;
  for (const Sequence* s : running_) (s->pending() == 1 ? decoders : prefillers) = true;
  const bool can_admit = !waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.max_running_requests;
  Batch batch;
  if ((prefillers || can_admit) && !(decoders && last_step_prefill_)) batch = prefill_batch(decoders);
  last_step_prefill_ = !batch.seqs.empty();
  if (batch.seqs.empty() && decoders) batch = decode_batch();
  if (batch.seqs.empty() && !last_step_prefill_ && (prefillers || can_admit)) {
    batch = prefill_batch(false);  // decoders were all retracted to make room
    last_step_prefill_ = !batch.seqs.empty();
  }
  if (batch.seqs.empty()) {
    // Prefills stuck on pages with nothing to free them: give the newest one's pages back.
    if (running_.size() > 1) retract(*running_.back());
    return false;
  }
  return run(batch);
}

// Every decoding request, oldest first (room for a newer one's token may retract it).
Scheduler::Batch Scheduler::decode_batch() {
  Batch b;
  const std::vector<Sequence*> running = running_;
  for (Sequence* s : running) {
    if (!s->running || s->pending() != 1) continue;  // retracted for an older one, or prefilling
    if (!make_room(*s, 1, b.seqs)) continue;
    b.seqs.push_back(s);
    b.chunks.push_back(1);
  }
  return b;
}

// Prefill chunks within the step's token budget: running prefills first (oldest first), then
// waiting requests join in order while there is room. The budget is the chunk size while requests
// decode (it bounds their wait), else the larger max_prefill_tokens (a lone long prompt in one step).
Scheduler::Batch Scheduler::prefill_batch(bool decoders_wait, bool may_retract) {
  Batch b;
  int64_t budget = decoders_wait || options_.max_prefill_tokens <= 0
                       ? options_.chunked_prefill_size
                       : std::max(options_.max_prefill_tokens, options_.chunked_prefill_size);
  const std::vector<Sequence*> running = running_;
  for (Sequence* s : running) {
    if (budget <= 0) break;
    if (!s->running || s->pending() <= 1) continue;
    const int64_t n = std::min(s->pending(), budget);
    if (!make_room(*s, n, b.seqs, may_retract)) continue;
    b.seqs.push_back(s);
    b.chunks.push_back(n);
    budget -= n;
  }
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int64_t>(running_.size()) < options_.max_running_requests) {
    Sequence* s = waiting_.front();
    if (sibling_prefilling(*s)) break;  // its prompt's KV is about to be in the cache
    int64_t chunk = 0;
    if (!admit(*s, budget, chunk)) break;
    waiting_.pop_front();
    b.seqs.push_back(s);
    b.chunks.push_back(chunk);
    budget -= chunk;
  }
  return b;
}

// Runs the batch: its step completes now, or stays in flight when it is a decode step the next
// one may be queued behind (overlap).
bool Scheduler::run(const Batch& batch) {
  std::optional<Launched> step = launch(batch, forward_batch(batch));
  if (!step) return true;  // failed: the batch's requests have ended with the error
  bool keep = options_.overlap && step->decode;
  for (const Sequence* s : batch.seqs) keep = keep && overlappable(*s);
  if (keep) in_flight_ = std::move(step);
  else complete(*step);
  return true;
}

// Whether a decode step may be queued before this request's previous token is on the host: its
// next draw must not depend on that token there (grammar masks, penalties), and its logprobs must
// not need the logits row after the next step has overwritten it.
bool Scheduler::overlappable(const Sequence& s) const {
  const SamplingParams& p = s.req.params;
  return !s.matcher && p.logprobs <= 0 && p.repetition_penalty == 1.0 && p.frequency_penalty == 0.0 &&
         p.presence_penalty == 0.0;
}

// The step behind the one in flight, launched; nullopt when it cannot be queued yet. A prefill
// step when one is due (the same choice as step()'s) and its chunks fit without a retraction; else
// a decode step when every decoding request can draw without its last token on the host, the pages
// are there, and the runner can take the in-flight ids on the device.
std::optional<Scheduler::Launched> Scheduler::launch_behind_in_flight() {
  if (!options_.overlap) return std::nullopt;
  bool decoders = false;
  for (const Sequence* s : running_) decoders = decoders || s->pending() == 1;
  if (prefill_due() && !(decoders && last_step_prefill_)) {
    Batch b = prefill_batch(decoders, /*may_retract=*/false);
    if (b.seqs.empty()) return std::nullopt;
    last_step_prefill_ = true;
    return launch(b, forward_batch(b));
  }
  Batch b;
  int64_t need = 0;
  const auto& pool = runner_.kv_pool();
  for (Sequence* s : running_) {
    if (s->pending() != 1) continue;
    // Its token in flight is its last (length): it ends when that step completes.
    const int64_t len = static_cast<int64_t>(s->tokens.size()) + s->inflight;
    if (s->num_output() + s->inflight >= s->req.params.max_tokens ||
        (limits_.context_length > 0 && len >= limits_.context_length))
      continue;
    if (!overlappable(*s)) return std::nullopt;
    need += std::max<int64_t>(0, pool.pages_for_tokens(s->kv_len + 1) - static_cast<int64_t>(s->pages.size()));
    b.seqs.push_back(s);
    b.chunks.push_back(1);
  }
  if (b.seqs.empty() || need > cache_.available_pages()) return std::nullopt;
  for (Sequence* s : b.seqs)
    LOOM_CHECK(make_room(*s, 1, b.seqs, false), "overlapped decode: no page for request ", s->id, " although ", need,
               " were available");
  model::ForwardBatch fb = forward_batch(b);
  if (fb.previous_ids && !runner_.takes_previous_ids(fb)) return std::nullopt;  // the pages stay for the next step
  last_step_prefill_ = false;
  return launch(b, std::move(fb));
}

// The forward's inputs: each sequence's chunk, or for one whose previous token is still being
// sampled by the step in flight, that token (a placeholder for its row when it is on the device).
model::ForwardBatch Scheduler::forward_batch(const Batch& batch) {
  model::ForwardBatch fb;
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    Sequence* s = batch.seqs[i];
    model::SequenceInput in;
    if (s->inflight > 0) {
      LOOM_CHECK(in_flight_ && batch.chunks[i] == 1 && s->inflight == 1 && s->inflight_row >= 0,
                 "request ", s->id, " has a token in flight but no step in flight holds it");
      if (in_flight_->on_device) {
        in.tokens = {-1 - s->inflight_row};
        fb.previous_ids = device_sampler_->launched_ids();
      } else {
        in.tokens = {in_flight_->next[static_cast<size_t>(s->inflight_row)]};
      }
    } else {
      in.tokens.assign(s->tokens.begin() + s->kv_len, s->tokens.begin() + s->kv_len + batch.chunks[i]);
    }
    in.start_pos = static_cast<int32_t>(s->kv_len);
    in.page_table = s->pages;
    fb.seqs.push_back(std::move(in));
  }
  return fb;
}

// Queues the forward and the sampling of its yielding rows (a sequence whose chunk reaches the
// end of its tokens yields one); the K/V positions count as computed from here on. nullopt when
// the forward failed (the batch's requests have ended with the error).
std::optional<Scheduler::Launched> Scheduler::launch(const Batch& batch, model::ForwardBatch fb) {
  const size_t n = batch.seqs.size();
  Launched l;
  l.yields.resize(n);
  l.next.assign(n, -1);
  l.logprobs.resize(n);
  l.decode = true;
  for (size_t i = 0; i < n; ++i) {
    l.ids.push_back(batch.seqs[i]->id);
    l.yields[i] = batch.seqs[i]->pending() == batch.chunks[i];
    l.decode = l.decode && batch.chunks[i] == 1 && batch.seqs[i]->pending() == 1;
  }
  try {
    Tensor logits = runner_.forward_device_logits(fb);
    // A GPU runs the forward asynchronously: the grammar masks are made on the host meanwhile.
    const std::vector<int32_t> mask_rows = grammar_masks(batch.seqs, l.yields);
    const int64_t words = grammar::mask_words(limits_.vocab_size);
    LOOM_CHECK(logits.dim() == 2 && logits.size(0) == static_cast<int64_t>(n) && logits.size(1) >= limits_.vocab_size,
               "the runner returned logits ", logits.str(), " for a batch of ", n, " (vocab ", limits_.vocab_size, ")");
    if (logits.device().is_cuda()) {
      plan_device_sampling(batch.seqs, l.yields, mask_rows);
      int64_t masked = 0;
      for (int32_t r : mask_rows) masked += r >= 0;
      if (!device_sampler_) device_sampler_ = std::make_unique<runtime::DeviceSampler>();
      device_sampler_->launch(logits, limits_.vocab_size, plans_, edits_, masks_.data(),
                              static_cast<size_t>(masked * words));
      l.on_device = true;
      l.logits = logits;
    } else {
      logits = logits.contiguous();
      LOOM_CHECK(logits.dtype() == DType::f32 && logits.size(1) == limits_.vocab_size, "the runner returned logits ",
                 logits.str(), " on the host; f32 [rows, ", limits_.vocab_size, "] expected");
      for (size_t i = 0; i < n; ++i) {
        if (!l.yields[i]) continue;
        const auto& p = batch.seqs[i]->req.params;
        const uint32_t* allowed = mask_rows[i] >= 0 ? masks_.data() + mask_rows[i] * words : nullptr;
        l.next[i] = batch.seqs[i]->sampler.sample(logits.data<float>() + static_cast<int64_t>(i) * limits_.vocab_size,
                                                  limits_.vocab_size, p.logprobs >= 0 ? &l.logprobs[i] : nullptr,
                                                  allowed);
      }
    }
  } catch (const std::exception& e) {
    fail_ids(l.ids, e.what());
    return std::nullopt;
  }
  for (size_t i = 0; i < n; ++i) {
    Sequence* s = batch.seqs[i];
    s->kv_len += batch.chunks[i];
    // A prefilled chunk is published at once, so that requests sharing the prefix reuse it now.
    if (batch.chunks[i] > 1 && cache_.enabled()) s->lock = cache_.publish(s->tokens, s->pages, s->kv_len, s->lock);
    if (l.yields[i]) {
      ++s->inflight;
      s->inflight_row = static_cast<int32_t>(i);
    }
  }
  return l;
}

void Scheduler::complete_in_flight() {
  Launched step = std::move(*in_flight_);
  in_flight_.reset();
  complete(step);
}

// Takes a launched step's tokens in: waits for its ids when they come from the device, then each
// yielding request that is still here gets its token (which may end it).
void Scheduler::complete(Launched& l) {
  std::vector<float> chosen_logprob;
  if (l.on_device) {
    try {
      device_sampler_->finish(l.next, chosen_logprob);
    } catch (const std::exception& e) {
      fail_ids(l.ids, e.what());
      return;
    }
  }
  ++stats_.steps;
  for (size_t i = 0; i < l.ids.size(); ++i) {
    if (!l.yields[i]) continue;
    auto it = seqs_.find(l.ids[i]);
    if (it == seqs_.end()) continue;  // ended while the step ran (aborted, or stopped on the step before)
    Sequence& s = *it->second;
    --s.inflight;
    if (l.on_device) {
      if (l.next[i] < 0 || l.next[i] >= limits_.vocab_size) {
        RequestOutput out;
        out.error = str("device sampling chose token ", l.next[i]);
        finish(s, out, FinishReason::error);
        continue;
      }
      s.sampler.accept(l.next[i]);
      const int64_t top = s.req.params.logprobs;
      if (top > 0) {  // the top alternatives need the whole row: this row alone comes to the host
        const Tensor row = runtime::to_host_f32(l.logits[static_cast<int64_t>(i)]);
        l.logprobs[i] = token_logprob(row.data<float>(), limits_.vocab_size, l.next[i], top);
      } else if (top == 0) {
        l.logprobs[i].token = l.next[i];
        l.logprobs[i].logprob = chosen_logprob[i];
      }
    }
    on_token(s, l.next[i], std::move(l.logprobs[i]));
  }
}

// The allowed-token masks of the yielding rows whose grammar restricts the next token, into
// masks_ (mask_words(vocab) words each); per row its mask's index, or -1 for none.
std::vector<int32_t> Scheduler::grammar_masks(const std::vector<Sequence*>& batch, const std::vector<char>& yields) {
  std::vector<int32_t> rows(batch.size(), -1);
  std::vector<grammar::Matcher*> active;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!yields[i] || !batch[i]->matcher || !batch[i]->matcher->active()) continue;
    rows[i] = static_cast<int32_t>(active.size());
    active.push_back(&*batch[i]->matcher);
  }
  if (active.empty()) return rows;
  masks_.resize(active.size() * static_cast<size_t>(grammar::mask_words(limits_.vocab_size)));
  grammar::fill_masks(active, masks_.data(), limits_.vocab_size);
  return rows;
}

// The device sampler's row plans (plans_, edits_) for the yielding rows.
void Scheduler::plan_device_sampling(const std::vector<Sequence*>& batch, const std::vector<char>& yields,
                                     const std::vector<int32_t>& mask_rows) {
  plans_.assign(batch.size(), runtime::SampleRowPlan{});
  edits_.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    if (yields[i]) batch[i]->sampler.plan_device(plans_[i], edits_, limits_.vocab_size);
    else plans_[i].skip = true;
    plans_[i].mask_row = mask_rows[i];
  }
}

void Scheduler::on_token(Sequence& s, int32_t tok, TokenLogprob lp) {
  const auto& p = s.req.params;
  if (s.matcher && !s.matcher->accept(tok)) {  // cannot happen when the mask was applied
    RequestOutput out;
    out.error = str("the request's grammar rejected the sampled token ", tok);
    finish(s, out, FinishReason::error);
    return;
  }
  RequestOutput out;
  out.request_id = s.id;
  s.tokens.push_back(tok);
  ++stats_.generation_tokens;
  const auto now = Clock::now();
  if (s.num_output() == 1) {
    stats_.ttft.observe(std::chrono::duration<double>(now - s.submitted).count());
  } else {
    stats_.inter_token.observe(std::chrono::duration<double>(now - s.last_token).count());
  }
  s.last_token = now;
  out.token_ids = {tok};
  if (p.logprobs >= 0) out.logprobs.push_back(std::move(lp));

  FinishReason reason = FinishReason::none;
  const bool eos = std::count(eos_ids_.begin(), eos_ids_.end(), tok) > 0;
  const bool stop_token = (!p.ignore_eos && eos) || std::count(p.stop_token_ids.begin(), p.stop_token_ids.end(), tok);
  // A grammar that has ended (on one of its stop tokens, or on its last token when the model has
  // none) lets nothing follow, even with ignore_eos.
  const bool grammar_ended = s.matcher && s.matcher->terminated();
  if (stop_token || (grammar_ended && eos)) {
    out.text = s.text.flush();
    reason = FinishReason::stop;
  } else {
    out.text = s.text.push(tok);
    if (s.text.stopped() || grammar_ended) reason = FinishReason::stop;
    if (grammar_ended) out.text += s.text.flush();
  }
  if (reason == FinishReason::none &&
      (s.num_output() >= p.max_tokens ||
       (limits_.context_length > 0 && static_cast<int64_t>(s.tokens.size()) >= limits_.context_length))) {
    out.text += s.text.flush();
    reason = FinishReason::length;
  }
  if (reason != FinishReason::none) {
    finish(s, out, reason);
    return;
  }
  out.prompt_tokens = s.prompt_len;
  out.completion_tokens = s.num_output();
  out.cached_tokens = s.cached_tokens;
  if (s.req.on_output) s.req.on_output(out);
}

// Ends each of these requests that is still here with the error.
void Scheduler::fail_ids(const std::vector<uint64_t>& ids, const std::string& what) {
  for (uint64_t id : ids) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;
    RequestOutput out;
    out.error = what;
    finish(*it->second, out, FinishReason::error);
  }
}

}  // namespace loom::engine
