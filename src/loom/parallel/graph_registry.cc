#include "loom/parallel/graph_registry.h"

#include <set>

namespace loom::parallel {

namespace {
thread_local bool t_capturing = false;
}

Communicator& GraphRegistry::add(const std::string& name, std::shared_ptr<Communicator> comm) {
  LOOM_CHECK(comm != nullptr, "GraphRegistry: null communicator for '", name, "'");
  auto& slot = groups_[name];
  slot = std::move(comm);
  return *slot;
}

Communicator& GraphRegistry::get(const std::string& name) const {
  auto it = groups_.find(name);
  if (it == groups_.end()) {
    std::string known;
    for (const auto& [k, v] : groups_) known += (known.empty() ? "" : ", ") + k;
    throw Error(loom::str("GraphRegistry: no group '", name, "' (registered: ", known.empty() ? "none" : known,
                          ")"));
  }
  return *it->second;
}

std::vector<std::string> GraphRegistry::names() const {
  std::vector<std::string> v;
  for (const auto& [k, c] : groups_) v.push_back(k);
  return v;
}

void GraphRegistry::prepare_for_capture() {
  std::set<Communicator*> done;
  for (auto& [name, comm] : groups_)
    if (done.insert(comm.get()).second) comm->prepare_for_capture();
}

GraphCaptureGuard::GraphCaptureGuard() : previous_(t_capturing) { t_capturing = true; }
GraphCaptureGuard::~GraphCaptureGuard() { t_capturing = previous_; }
bool GraphCaptureGuard::active() { return t_capturing; }

}  // namespace loom::parallel
