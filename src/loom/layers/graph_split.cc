#include "loom/layers/graph_split.h"

namespace loom::layers {
namespace {
thread_local GraphSplitter* t_active = nullptr;  // ranks capture on their own threads
}

GraphSplitter* GraphSplitter::active() { return t_active; }

GraphSplitScope::GraphSplitScope(GraphSplitter* splitter) : previous_(t_active) { t_active = splitter; }
GraphSplitScope::~GraphSplitScope() { t_active = previous_; }

}  // namespace loom::layers
