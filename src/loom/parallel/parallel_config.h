// The parallel sizes of a run (SGLang's meaning for every flag) and their validation.
// Model-dependent checks (heads, kv heads, experts dividing) live where the model is known.
#pragma once
#include <string>

namespace loom::parallel {

struct ParallelConfig {
  int tp = 1;        // --tp-size: ranks of one pipeline stage
  int pp = 1;        // --pp-size
  int ep = 1;        // --ep-size: MoE expert parallel (moe_ep)
  int moe_dp = 1;    // --moe-dp-size
  int attn_cp = 1;   // --attn-cp-size: attention context parallel
  int attn_dp = 1;   // --dp-size with --enable-dp-attention (1 without it)
  bool prefill_cp = false;  // --enable-prefill-context-parallel: split long prefills over ATTN_CP
  int nnodes = 1;    // --nnodes
  int node_rank = 0; // --node-rank
  std::string dist_init_addr;  // --dist-init-addr host:port (required when nnodes > 1)
  int dist_timeout_s = 600;    // --dist-timeout: how long to wait for a missing rank

  int world_size() const { return tp * pp; }
  int attn_tp() const { return tp / (attn_dp * attn_cp); }
  int moe_tp() const { return tp / (ep * moe_dp); }
  int ranks_per_node() const { return world_size() / nnodes; }
  // When attn_cp > moe_dp the CP partners' tokens must meet before MoE: MOE_DP is the ATTN_CP group.
  bool moe_dp_is_attn_cp() const { return attn_cp > moe_dp; }

  // Throws loom::InvalidArgument naming the flags and numbers of the first impossible combination.
  // local_devices: GPUs visible on this node, or 0 when unknown (CPU runs: one thread per rank).
  void validate(int local_devices = 0) const;

  std::string str() const;  // "tp 8, pp 1, ep 2, moe_dp 1, attn_cp 2, attn_dp 1 (attn_tp 4, moe_tp 4)"
};

// Splits "host:port"; throws InvalidArgument naming --dist-init-addr on a malformed address.
void parse_host_port(const std::string& addr, std::string& host, int& port);

}  // namespace loom::parallel
