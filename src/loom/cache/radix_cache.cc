#include "loom/cache/radix_cache.h"

#include <queue>

#include "loom/tensor/error.h"

namespace loom::cache {

struct RadixCache::Node {
  std::vector<int32_t> key;  // the page's tokens (empty at the root)
  int32_t page = 0;
  Node* parent = nullptr;
  std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;
  int64_t refs = 0;
  uint64_t last_use = 0;
};

RadixCache::RadixCache(KvPool& pool, bool enabled)
    : pool_(pool), enabled_(enabled), root_(std::make_unique<Node>()) {}

RadixCache::~RadixCache() = default;  // pages go away with the pool; nothing to give back

RadixCache::Match RadixCache::match(const std::vector<int32_t>& tokens, int64_t max_tokens) {
  Match m;
  m.node = root_.get();
  if (!enabled_) return m;
  const int64_t ps = pool_.page_size();
  const int64_t limit = std::min<int64_t>(max_tokens, static_cast<int64_t>(tokens.size()));
  std::vector<int32_t> key(static_cast<size_t>(ps));
  const uint64_t now = ++clock_;
  for (int64_t start = 0; start + ps <= limit; start += ps) {
    key.assign(tokens.begin() + start, tokens.begin() + start + ps);
    auto it = m.node->children.find(key);
    if (it == m.node->children.end()) break;
    m.node = it->second.get();
    m.node->last_use = now;
    m.pages.push_back(m.node->page);
  }
  return m;
}

void RadixCache::lock(Node* node) {
  for (Node* n = node; n && n != root_.get(); n = n->parent)
    if (n->refs++ == 0) ++num_locked_;
}

void RadixCache::unlock(Node* node) {
  for (Node* n = node; n && n != root_.get(); n = n->parent) {
    LOOM_CHECK(n->refs > 0, "radix cache: unlocking page ", n->page, " that is not locked");
    if (--n->refs == 0) --num_locked_;
  }
}

// Walks the full computed pages of `tokens` into the tree: a page whose tokens are already there is
// a duplicate (into `to_pool`, and pages[i] becomes the tree's page), any other joins as a node.
// Returns the deepest node (the root when there is no full page).
RadixCache::Node* RadixCache::insert(const std::vector<int32_t>& tokens, std::vector<int32_t>& pages, int64_t kv_len,
                                     std::vector<int32_t>& to_pool) {
  const int64_t ps = pool_.page_size();
  LOOM_CHECK(kv_len <= static_cast<int64_t>(tokens.size()) &&
                 pool_.pages_for_tokens(kv_len) <= static_cast<int64_t>(pages.size()),
             "radix cache: ", kv_len, " computed tokens with ", tokens.size(), " tokens and ", pages.size(), " pages");
  Node* node = root_.get();
  const uint64_t now = ++clock_;
  for (size_t i = 0; static_cast<int64_t>(i + 1) * ps <= kv_len; ++i) {
    std::vector<int32_t> key(tokens.begin() + static_cast<int64_t>(i) * ps,
                             tokens.begin() + static_cast<int64_t>(i + 1) * ps);
    auto it = node->children.find(key);
    if (it != node->children.end()) {
      if (it->second->page != pages[i]) {  // another request's copy
        to_pool.push_back(pages[i]);
        pages[i] = it->second->page;
      }
      node = it->second.get();
    } else {
      auto child = std::make_unique<Node>();
      child->key = std::move(key);
      child->page = pages[i];
      child->parent = node;
      Node* raw = child.get();
      node->children.emplace(raw->key, std::move(child));
      ++num_nodes_;
      node = raw;
    }
    node->last_use = now;
  }
  return node;
}

void RadixCache::release(const std::vector<int32_t>& tokens, const std::vector<int32_t>& pages, int64_t kv_len,
                         Node* locked) {
  std::vector<int32_t> to_pool;
  size_t kept = 0;  // pages now owned by the tree
  if (enabled_) {
    std::vector<int32_t> own = pages;
    insert(tokens, own, kv_len, to_pool);
    kept = static_cast<size_t>(kv_len / pool_.page_size());
  } else {
    LOOM_CHECK(pool_.pages_for_tokens(kv_len) <= static_cast<int64_t>(pages.size()), "radix cache: release of ",
               kv_len, " computed tokens with ", pages.size(), " pages");
  }
  to_pool.insert(to_pool.end(), pages.begin() + static_cast<int64_t>(kept), pages.end());
  unlock(locked);
  pool_.free(to_pool);
}

RadixCache::Node* RadixCache::publish(const std::vector<int32_t>& tokens, std::vector<int32_t>& pages,
                                      int64_t kv_len, Node* locked) {
  if (!enabled_) return locked;
  std::vector<int32_t> to_pool;
  Node* node = insert(tokens, pages, kv_len, to_pool);
  lock(node);  // before the unlock, so that the shared part never looks evictable
  unlock(locked);
  pool_.free(to_pool);
  return node == root_.get() ? nullptr : node;
}

int64_t RadixCache::evict(int64_t num_pages) {
  if (num_pages <= 0 || evictable_pages() == 0) return 0;
  auto older = [](const Node* a, const Node* b) { return a->last_use > b->last_use; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(older)> leaves(older);
  std::vector<Node*> stack{root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n != root_.get() && n->children.empty() && n->refs == 0) leaves.push(n);
    for (auto& [k, c] : n->children) stack.push_back(c.get());
  }
  int64_t freed = 0;
  std::vector<int32_t> pages;
  while (freed < num_pages && !leaves.empty()) {
    Node* n = leaves.top();
    leaves.pop();
    Node* parent = n->parent;
    pages.push_back(n->page);
    parent->children.erase(n->key);  // destroys n
    --num_nodes_;
    ++freed;
    if (parent != root_.get() && parent->children.empty() && parent->refs == 0) leaves.push(parent);
  }
  pool_.free(pages);
  return freed;
}

std::optional<std::vector<int32_t>> RadixCache::allocate(int64_t num_pages) {
  if (pool_.num_free() < num_pages) evict(num_pages - pool_.num_free());
  return pool_.allocate(num_pages);
}

std::string RadixCache::idle_leak_report() const {
  if (num_locked_ != 0) return str(num_locked_, " cached pages are still locked by requests");
  if (pool_.num_free() + num_nodes_ != pool_.num_pages())
    return str("KV pages leaked: ", pool_.num_pages(), " pages, ", pool_.num_free(), " free, ", num_nodes_,
               " in the prefix cache, ", pool_.num_pages() - pool_.num_free() - num_nodes_, " unaccounted");
  return "";
}

}  // namespace loom::cache
