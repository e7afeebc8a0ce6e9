#include "loom/engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace loom::engine {
namespace {

bool is_greedy(const SamplingParams& p) { return p.temperature < 1e-6; }

int32_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return static_cast<int32_t>(best);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params, const std::vector<int32_t>& prompt, uint64_t seed)
    : params_(params), rng_(params.seed.value_or(seed)) {
  if (params_.repetition_penalty != 1.0) seen_.insert(prompt.begin(), prompt.end());
}

void Sampler::observe(int32_t token) {
  if (params_.repetition_penalty != 1.0) seen_.insert(token);
  if (params_.frequency_penalty != 0.0 || params_.presence_penalty != 0.0) ++counts_[token];
}

int32_t Sampler::sample(const float* logits, int64_t vocab, TokenLogprob* logprob, const uint32_t* allowed) {
  const bool penalized = !seen_.empty() || !counts_.empty() || !params_.logit_bias.empty();
  const float* row = logits;
  if (penalized || allowed) {
    work_.assign(logits, logits + vocab);
    for (auto [t, b] : params_.logit_bias) work_[t] += b;
    const float rp = static_cast<float>(params_.repetition_penalty);
    for (int32_t t : seen_) work_[t] = work_[t] > 0 ? work_[t] / rp : work_[t] * rp;
    for (auto [t, c] : counts_)
      work_[t] -= static_cast<float>(params_.frequency_penalty * static_cast<double>(c) + params_.presence_penalty);
    if (allowed)
      for (int64_t t = 0; t < vocab; ++t)
        if (!((allowed[t >> 5] >> (t & 31)) & 1u)) work_[t] = -INFINITY;
    row = work_.data();
  }

  int32_t chosen;
  if (is_greedy(params_)) {
    chosen = argmax(row, vocab);
  } else {
    // Candidates: the top k (or all), as probabilities at the request's temperature.
    candidates_.resize(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) candidates_[i] = static_cast<int32_t>(i);
    auto higher = [row](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
    if (params_.top_k > 0 && params_.top_k < vocab) {
      std::nth_element(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(), higher);
      candidates_.resize(static_cast<size_t>(params_.top_k));
    }
    // Best-first whenever a top-k or top-p set is drawn from (the device sampler walks the same order).
    if (params_.top_p < 1.0 || static_cast<int64_t>(candidates_.size()) < vocab)
      std::sort(candidates_.begin(), candidates_.end(), higher);
    float max_logit = -INFINITY;
    for (int32_t c : candidates_) max_logit = std::max(max_logit, row[c]);
    const double inv_t = 1.0 / params_.temperature;
    std::vector<double> probs(candidates_.size());
    double total = 0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      probs[i] = std::exp((static_cast<double>(row[candidates_[i]]) - max_logit) * inv_t);
      total += probs[i];
    }
    size_t keep = candidates_.size();
    if (params_.top_p < 1.0) {  // smallest best-first set whose mass reaches top_p
      double mass = 0;
      for (size_t i = 0; i < keep; ++i) {
        mass += probs[i] / total;
        if (mass >= params_.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    const double floor = params_.min_p * 1.0;  // relative to the best token's probability (exp(0) = 1)
    double kept_total = 0;
    for (size_t i = 0; i < keep; ++i) {
      if (probs[i] < floor) probs[i] = 0;
      kept_total += probs[i];
    }
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * kept_total;
    double acc = 0;
    chosen = -1;
    for (size_t i = 0; i < keep; ++i) {
      if (probs[i] <= 0) continue;
      acc += probs[i];
      chosen = candidates_[i];
      if (u < acc) break;
    }
    if (chosen < 0) chosen = argmax(row, vocab);
  }
  if (logprob) *logprob = token_logprob(logits, vocab, chosen, std::max<int64_t>(params_.logprobs, 0));
  observe(chosen);
  return chosen;
}

void Sampler::plan_device(runtime::SampleRowPlan& row, std::vector<runtime::LogitEdit>& edits, int64_t vocab) {
  row = runtime::SampleRowPlan{};
  row.greedy = is_greedy(params_);
  row.want_logprob = params_.logprobs >= 0;
  if (!row.greedy) {
    row.temperature = params_.temperature;
    row.top_p = params_.top_p;
    row.min_p = params_.min_p;
    row.top_k = params_.top_k > 0 && params_.top_k < vocab ? static_cast<int32_t>(params_.top_k) : 0;
    row.u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  }
  row.edit_begin = static_cast<int32_t>(edits.size());
  if (!seen_.empty() || !counts_.empty() || !params_.logit_bias.empty()) {
    std::unordered_map<int32_t, size_t> at;  // token -> its edit
    auto edit = [&](int32_t t) -> runtime::LogitEdit& {
      auto [it, fresh] = at.emplace(t, edits.size());
      if (fresh) edits.push_back({t, 0.0f, 1.0f, 0.0f});
      return edits[it->second];
    };
    for (auto [t, b] : params_.logit_bias) edit(t).bias += b;
    const float rp = static_cast<float>(params_.repetition_penalty);
    for (int32_t t : seen_) edit(t).repetition = rp;
    for (auto [t, c] : counts_)
      edit(t).sub = static_cast<float>(params_.frequency_penalty * static_cast<double>(c) + params_.presence_penalty);
  }
  row.edit_end = static_cast<int32_t>(edits.size());
}

TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t chosen, int64_t top) {
  float max_logit = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double log_z = max_logit + std::log(sum);
  TokenLogprob out;
  out.token = chosen;
  out.logprob = static_cast<float>(logits[chosen] - log_z);
  if (top > 0) {
    top = std::min(top, vocab);
    std::vector<int32_t> idx(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) idx[i] = static_cast<int32_t>(i);
    auto higher = [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(idx.begin(), idx.begin() + top, idx.end(), higher);
    for (int64_t i = 0; i < top; ++i) out.top.emplace_back(idx[i], static_cast<float>(logits[idx[i]] - log_z));
  }
  return out;
}

}  // namespace loom::engine
