// A batch of sequences over a paged KV cache whose pages are handed out in shuffled order, for
// the attention kernel tests: each sequence (cached prefix, new tokens) gets the pages its
// prefix + new tokens need; page 0 stays unused (the pool's scratch page).
#pragma once
#include <algorithm>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "loom/model/forward_batch.h"

namespace loom::testing {

// Pages a pool needs for `seqs`: theirs, page 0 and two unused.
inline int64_t pages_for(const std::vector<std::pair<int, int>>& seqs, int64_t page_size) {
  int64_t pages = 3;
  for (auto [start, n] : seqs) pages += (start + n + page_size - 1) / page_size;
  return pages;
}

inline model::ForwardBatch shuffled_page_batch(const std::vector<std::pair<int, int>>& seqs, int64_t pages,
                                               int64_t page_size, std::mt19937& rng) {
  std::vector<int32_t> free_pages(pages - 1);
  std::iota(free_pages.begin(), free_pages.end(), 1);
  std::shuffle(free_pages.begin(), free_pages.end(), rng);
  model::ForwardBatch batch;
  for (auto [start, n] : seqs) {
    model::SequenceInput s;
    s.start_pos = start;
    s.tokens.assign(n, 0);
    const int64_t np = (start + n + page_size - 1) / page_size;
    s.page_table.assign(free_pages.end() - np, free_pages.end());
    free_pages.resize(free_pages.size() - np);
    batch.seqs.push_back(s);
  }
  return batch;
}

}  // namespace loom::testing
