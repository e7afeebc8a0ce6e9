// Piecewise CUDA graphs (prefill and extend steps): a forward is captured in pieces that end where
// an op cannot be captured for every batch of a token count. Attention is such an op: its
// FlashInfer schedule, its kernel choice and the KV it writes depend on the batch's sequences,
// which vary at a fixed token count. While a capturer is active on a thread, such an op calls
// split(): the capturer closes the piece captured so far, runs the op once now (with the capture's
// context) and keeps it to run again between the pieces at every replay, with the replayed
// batch's context (runtime/piecewise_graph_runner.h).
#pragma once
#include <functional>

#include "loom/layers/forward_context.h"

namespace loom::layers {

class GraphSplitter {
 public:
  // Runs the op for a step's context. Its tensors are those of the capture (fixed addresses); a
  // replay passes the real batch, whose ctx.num_tokens may be below the captured token count.
  using EagerOp = std::function<void(const ForwardContext& ctx)>;

  virtual ~GraphSplitter() = default;
  virtual void split(const char* op, EagerOp run, const ForwardContext& capture_ctx) = 0;

  static GraphSplitter* active();  // the calling thread's capturer, or null
};

// Makes `splitter` the calling thread's active capturer while it lives.
class GraphSplitScope {
 public:
  explicit GraphSplitScope(GraphSplitter* splitter);
  ~GraphSplitScope();
  GraphSplitScope(const GraphSplitScope&) = delete;
  GraphSplitScope& operator=(const GraphSplitScope&) = delete;

 private:
  GraphSplitter* previous_;
};

}  // namespace loom::layers
