#include "loom/parallel/moe_token_plan.h"

#include "loom/tensor/error.h"

namespace loom::parallel {

const char* exchange_name(TokenExchange e) {
  switch (e) {
    case TokenExchange::own: return "own";
    case TokenExchange::split: return "split";
    case TokenExchange::gather: return "gather";
  }
  return "?";
}

static std::vector<int> run(int first, int stride, int count) {
  std::vector<int> v(count);
  for (int k = 0; k < count; ++k) v[k] = first + k * stride;
  return v;
}

static int class_size(const ParallelConfig& c, bool cp_split) {
  return cp_split ? c.attn_tp() : c.attn_tp() * c.attn_cp;
}

std::vector<int> attention_class(const ParallelConfig& c, int rank, bool cp_split) {
  const int n = class_size(c, cp_split);
  return run(rank - rank % n, 1, n);  // classes are consecutive, and TP groups are blocks of tp ranks
}

std::vector<int> moe_block(const ParallelConfig& c, int rank) {
  const int n = c.moe_tp() * c.ep;
  return run(rank - rank % n, 1, n);
}

MoeTokenPlan moe_token_plan(const ParallelConfig& c, int rank, bool cp_split) {
  const int cls = class_size(c, cp_split), blk = c.moe_tp() * c.ep;
  MoeTokenPlan p;
  if (cls == blk) {
    p.members = {rank};
  } else if (cls % blk == 0) {  // blocks inside a class: same position in each block
    p.mode = TokenExchange::split;
    const int first = rank - rank % cls;
    p.members = run(first + rank % blk, blk, cls / blk);
    p.index = (rank - first) / blk;
  } else if (blk % cls == 0) {  // classes inside a block: same position in each class
    p.mode = TokenExchange::gather;
    const int first = rank - rank % blk;
    p.members = run(first + rank % cls, cls, blk / cls);
    p.index = (rank - first) / cls;
  } else {
    throw InvalidArgument(str("unsupported layout ", c.str(), ": ", cls, " ranks share attention tokens and ", blk,
                              " ranks share MoE tokens; one must divide the other"));
  }
  return p;
}

}  // namespace loom::parallel
