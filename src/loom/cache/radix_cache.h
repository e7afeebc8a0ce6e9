// Prefix cache over the KV pool: a tree of token ids at page granularity (each edge is one full
// page of page_size tokens and owns that page's KV), so requests sharing a prefix (a system
// prompt, few-shot examples) reuse its pages instead of recomputing them.
//
// Pages on a path a running request uses are locked (ref-counted from that node up to the root);
// unlocked leaves are evicted least-recently-used first when the pool needs pages. Disabled, the
// cache holds nothing: match() finds nothing and release() frees every page.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loom/cache/kv_pool.h"

namespace loom::cache {

class RadixCache {
 public:
  struct Node;

  RadixCache(KvPool& pool, bool enabled);
  ~RadixCache();
  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;

  struct Match {
    std::vector<int32_t> pages;  // KV pages of the matched prefix, in order
    Node* node = nullptr;        // deepest matched node (the root when nothing matched)
    int64_t tokens() const { return static_cast<int64_t>(pages.size()); }  // in pages; * page_size
  };
  // The longest cached prefix of `tokens` made of whole pages and at most `max_tokens` long.
  // Refreshes the LRU time of the matched path. Lock the node before the next evict().
  Match match(const std::vector<int32_t>& tokens, int64_t max_tokens);

  void lock(Node* node);    // node and its ancestors cannot be evicted until unlock
  void unlock(Node* node);

  // A request is done with its pages: `pages` covers `tokens`, of which the first `kv_len` have
  // their KV computed. Full computed pages join the tree (a page whose prefix is already cached
  // is a duplicate and goes back to the pool); the rest go back to the pool. Then `locked`
  // (the node from match(), may be null) is unlocked.
  void release(const std::vector<int32_t>& tokens, const std::vector<int32_t>& pages, int64_t kv_len,
               Node* locked);

  // A running request publishes its computed prefix so that others can reuse it now (the n
  // choices of one prompt, requests sharing a system prompt): its full computed pages join the
  // tree; where the tree already holds a page for the same tokens, the request switches to that
  // page (`pages` is updated) and its own copy goes back to the pool. The lock moves from
  // `locked` to the deepest published node, which is returned (the request's new lock).
  Node* publish(const std::vector<int32_t>& tokens, std::vector<int32_t>& pages, int64_t kv_len, Node* locked);

  // Frees up to `num_pages` pages from unlocked leaves, oldest first; returns how many it freed.
  int64_t evict(int64_t num_pages);

  // Pages from the pool, evicting cached ones if the pool is short. All or none.
  std::optional<std::vector<int32_t>> allocate(int64_t num_pages);

  bool enabled() const { return enabled_; }
  int64_t cached_pages() const { return num_nodes_; }    // pages the tree holds
  int64_t locked_pages() const { return num_locked_; }   // of those, in use by requests
  int64_t evictable_pages() const { return num_nodes_ - num_locked_; }
  int64_t available_pages() const { return pool_.num_free() + evictable_pages(); }
  KvPool& pool() { return pool_; }

  // At idle every page is free or held (unlocked) by the tree. Empty when so, else what is wrong.
  std::string idle_leak_report() const;

 private:
  Node* insert(const std::vector<int32_t>& tokens, std::vector<int32_t>& pages, int64_t kv_len,
               std::vector<int32_t>& to_pool);

  KvPool& pool_;
  bool enabled_;
  std::unique_ptr<Node> root_;
  int64_t num_nodes_ = 0;
  int64_t num_locked_ = 0;
  uint64_t clock_ = 0;  // LRU time
};

}  // namespace loom::cache
