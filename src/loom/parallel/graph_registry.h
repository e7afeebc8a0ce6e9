// The groups a CUDA-graph capture may touch. Layers take their groups from the registry; before a
// capture the runtime calls prepare_for_capture(), and a communicator used inside a capture that
// was not prepared this way fails loudly (Communicator::check_capture_allowed).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loom/parallel/communicator.h"

namespace loom::parallel {

class GraphRegistry {
 public:
  // Registers (or re-registers) the device communicator a layer will use under `name`
  // ("tp", "moe_ep", ...), and returns it.
  Communicator& add(const std::string& name, std::shared_ptr<Communicator> comm);
  // The registered communicator; throws naming the registered ones when `name` is unknown.
  Communicator& get(const std::string& name) const;
  bool has(const std::string& name) const { return groups_.count(name) > 0; }
  std::vector<std::string> names() const;

  // Prepares every registered communicator (each once, however many names share it).
  void prepare_for_capture();

 private:
  std::map<std::string, std::shared_ptr<Communicator>> groups_;
};

// Marks the current thread as capturing a CUDA graph while it lives (the CUDA runtime wraps
// cudaStreamBeginCapture/EndCapture in one; tests use it as the fake "capturing" flag on CPU).
class GraphCaptureGuard {
 public:
  GraphCaptureGuard();
  ~GraphCaptureGuard();
  GraphCaptureGuard(const GraphCaptureGuard&) = delete;
  GraphCaptureGuard& operator=(const GraphCaptureGuard&) = delete;
  static bool active();  // is the calling thread capturing?

 private:
  bool previous_;
};

}  // namespace loom::parallel
